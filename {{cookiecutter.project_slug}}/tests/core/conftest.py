"""The decorator runs on both caches: reuse the cache fixture of the infrastructure tests."""

from tests.infrastructure.conftest import cache as cache
