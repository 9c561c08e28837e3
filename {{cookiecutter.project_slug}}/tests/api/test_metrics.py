"""`GET /metrics` exposes the app's own registry in the Prometheus text format."""

from httpx import AsyncClient


async def test_metrics_are_prometheus_text_with_cache_and_task_counters(
    client: AsyncClient,
) -> None:
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = ("cache_hits", "cache_misses", "cache_errors", "response_cache_requests")
    for family in (*families, "tasks_finished"):
        assert f"# TYPE {family}_total counter" in response.text
