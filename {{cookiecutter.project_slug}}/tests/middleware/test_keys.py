"""Property tests of the response cache's query key: requests whose routes receive different
query parameters get different keys; requests whose routes receive the same ones share one."""

import random
from urllib.parse import quote, quote_plus

from hypothesis import given
from hypothesis import strategies as st

from app.middleware.cache import query_key

names = st.sampled_from(["limit", "offset", "q", "tag", "a b", "é", "x&y", "k=v", "%"])
pairs = st.lists(st.tuples(names, st.text(max_size=6)), max_size=6)


def received(query: list[tuple[str, str]]) -> dict[str, list[str]]:
    """What a route reads: each name's values in the order sent (a scalar takes the last)."""
    by_name: dict[str, list[str]] = {}
    for name, value in query:
        by_name.setdefault(name, []).append(value)
    return by_name


def encoded(query: list[tuple[str, str]], *, plus: bool) -> bytes:
    """A query string as a client may write it: spaces as `+` or as `%20`."""
    quoting = quote_plus if plus else quote
    parts = [f"{quoting(name, safe='')}={quoting(value, safe='')}" for name, value in query]
    return "&".join(parts).encode()


@given(pairs, pairs)
def test_queries_a_route_reads_differently_get_different_keys(
    first: list[tuple[str, str]], second: list[tuple[str, str]]
) -> None:
    same = received(first) == received(second)

    assert (query_key(encoded(first, plus=True)) == query_key(encoded(second, plus=True))) is same


@given(pairs, st.randoms(use_true_random=False))
def test_queries_a_route_reads_the_same_share_one_key(
    query: list[tuple[str, str]], rng: random.Random
) -> None:
    by_name = received(query)
    names_in_another_order = list(by_name)
    rng.shuffle(names_in_another_order)
    reordered = [(name, value) for name in names_in_another_order for value in by_name[name]]

    key = query_key(encoded(query, plus=True))
    assert query_key(encoded(reordered, plus=False)) == key
