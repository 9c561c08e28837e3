"""The response cache's key: headers reduced to what the service can answer, parameters as
the route validates them, whatever else a client adds left out."""

from typing import Annotated
from urllib.parse import quote

import pytest
from fastapi import APIRouter, FastAPI, Query
from hypothesis import given
from hypothesis import strategies as st

from app.middleware.shared_routes import SharedRoute, SharedRoutes, public_cacheable
from app.middleware.variants import (
    JSON,
    NEITHER,
    PROBLEM_JSON,
    reduce_accept,
    reduce_accept_encoding,
)


@pytest.mark.parametrize(
    ("accept", "reduced"),
    [
        (None, JSON),
        (b"*/*", JSON),
        (b"application/json", JSON),
        (b"text/html, application/*;q=0.1", JSON),
        (b"APPLICATION/JSON; Q=0.5", JSON),
        (b"application/problem+json", PROBLEM_JSON),
        (b"application/json;q=0, */*", PROBLEM_JSON),
        (b"application/json;q=0.0, application/problem+json;q=0", NEITHER),
        (b"text/html", NEITHER),
        (b"", NEITHER),
    ],
)
def test_accept_is_reduced_to_what_the_service_answers(
    accept: bytes | None, reduced: bytes
) -> None:
    assert reduce_accept(accept) == reduced


@pytest.mark.parametrize(
    ("accept_encoding", "reduced"),
    [
        (None, b""),
        (b"identity", b""),
        (b"gzip, deflate", b"deflate,gzip"),
        (b"deflate;q=0.5, GZIP", b"deflate,gzip"),
        (b"*", b"br,deflate,gzip,zstd"),
        (b"*, gzip;q=0", b"br,deflate,zstd"),
        (b"x-junk-1, gzip", b"gzip"),
    ],
)
def test_accept_encoding_is_reduced_to_the_codings_a_middleware_could_produce(
    accept_encoding: bytes | None, reduced: bytes
) -> None:
    assert reduce_accept_encoding(accept_encoding) == reduced


def page_route() -> SharedRoute:
    router = APIRouter()

    @router.get("/things")
    @public_cacheable("things")
    async def things(
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        tag: Annotated[list[str] | None, Query()] = None,
    ) -> int:
        return limit

    app = FastAPI()
    app.include_router(router)
    routes = SharedRoutes()
    routes.load(app.router.routes)
    found = routes.match("/things")
    assert found is not None
    return found[0]


ROUTE = page_route()
junk = st.lists(
    st.tuples(st.text(min_size=1, max_size=5), st.text(max_size=5)).filter(
        lambda pair: pair[0] not in ("limit", "tag")
    ),
    max_size=5,
)


def query(pairs: list[tuple[str, str]]) -> bytes:
    return "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in pairs).encode()


@given(junk, st.integers(1, 100), st.integers(0, 3))
def test_parameters_the_route_does_not_read_never_change_the_key(
    extra: list[tuple[str, str]], limit: int, zeros: int
) -> None:
    plain = ROUTE.key({}, f"limit={limit}".encode())
    spelled = query([*extra, ("limit", "0" * zeros + str(limit))])

    assert ROUTE.key({}, spelled) == plain
    assert ROUTE.key({}, b"") == ROUTE.key({}, b"limit=20")  # the default is the value


def test_what_the_route_reads_differently_gets_another_key() -> None:
    keys = {ROUTE.key({}, q) for q in (b"limit=1", b"limit=2", b"tag=a", b"tag=a&tag=b")}
    repeated = ROUTE.key({}, b"limit=1&limit=3")  # FastAPI reads the last one

    assert len(keys) == 4
    assert repeated == ROUTE.key({}, b"limit=3")
    assert ROUTE.key({}, b"tag=b&tag=a") not in keys  # a list keeps its order
    assert ROUTE.key({}, b"limit=0") is None  # invalid: the route answers 422, nothing stored
