"""A path whose decoding changes its segments is a 400 problem, before routing."""

import pytest
from httpx import AsyncClient


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/tasks%2Fdead-letters"),
        ("GET", "/api/v1/tasks%2fdead-letters"),
        ("DELETE", "/api/v1/items%2F100"),
        ("GET", "/api/v1/items%5C1"),
        ("GET", "/api/v1/items/1%00"),
        ("GET", "/api/v1/items\\1"),
        ("GET", "/metrics%2F"),
    ],
)
async def test_an_encoded_separator_or_nul_is_400(
    client: AsyncClient, method: str, path: str
) -> None:
    answer = await client.request(method, path)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["request_id"] == answer.headers["x-request-id"]


async def test_encoded_characters_in_the_query_or_elsewhere_are_fine(client: AsyncClient) -> None:
    assert (await client.get("/api/v1/items?x=%2F%5C%00")).status_code == 200
    assert (await client.get("/api/v1/item%73")).status_code == 200  # `s`: the same segment


@pytest.mark.parametrize("task_id", ["a" * 65, "forged%0D%0Aline", "sp%20ace", "%C3%A9t%C3%A9"])
@pytest.mark.parametrize("template", ["/api/v1/tasks/{}", "/api/v1/tasks/dead-letters/{}/requeue"])
async def test_a_task_id_not_shaped_like_one_is_422(
    client: AsyncClient, template: str, task_id: str
) -> None:
    method = "POST" if template.endswith("requeue") else "GET"
    answer = await client.request(method, template.format(task_id))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
