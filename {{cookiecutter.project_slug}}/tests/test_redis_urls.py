"""Redis URLs: what each topology's URL means, and one message naming the setting for a bad one."""

import re
from pathlib import Path

import pytest
import trustme
from pydantic import ValidationError

from app.config import Settings
from app.redis_urls import RedisUrl, parse_redis_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost:6379/2", RedisUrl("node", "redis://localhost:6379/2", db=2)),
        ("rediss://:pw@cache.internal/0", RedisUrl("node", "rediss://:pw@cache.internal/0", True)),
        ("unix:///run/redis.sock?db=1", RedisUrl("node", "unix:///run/redis.sock?db=1", db=1)),
        (
            "redis+cluster://a:7000,b:7001,[::1]",
            RedisUrl(
                "cluster",
                "redis+cluster://a:7000,b:7001,[::1]",
                False,
                (("a", 7000), ("b", 7001), ("::1", 6379)),
            ),
        ),
        (
            "rediss+cluster://app:s%40cret@a:7000/0",
            RedisUrl(
                "cluster",
                "rediss+cluster://app:s%40cret@a:7000/0",
                True,
                (("a", 7000),),
                "app",
                "s@cret",
            ),
        ),
        (
            "redis+sentinel://:pw@s1:26380,s2/mymaster/3",
            RedisUrl(
                "sentinel",
                "redis+sentinel://:pw@s1:26380,s2/mymaster/3",
                False,
                (("s1", 26380), ("s2", 26379)),
                None,
                "pw",
                3,
                "mymaster",
            ),
        ),
        (
            "rediss+sentinel://s1:26379/mymaster",
            RedisUrl(
                "sentinel",
                "rediss+sentinel://s1:26379/mymaster",
                True,
                (("s1", 26379),),
                service_name="mymaster",
            ),
        ),
    ],
)
def test_each_topology_is_read_from_its_url(url: str, expected: RedisUrl) -> None:
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("memcached://localhost:11211", "unknown scheme 'memcached://'"),
        ("redis+replica://a:1", "unknown scheme 'redis+replica://'"),
        ("localhost:6379", "not a URL"),
        ("redis+cluster://a:7000,b:7001/1", "Redis Cluster has database 0 only"),
        ("redis+cluster://a:7000/0?ssl_cert_reqs=none", "take no options"),
        ("rediss+cluster://a:7000?ssl_ca_certs=/a.pem&ssl_ca_certs=/b.pem", "take no options"),
        ("redis+cluster://a:7000?ssl_ca_certs=/ca.pem", "use rediss+cluster://"),
        ("redis+sentinel://s1/mymaster?ssl_ca_certs=/ca.pem", "use rediss+sentinel://"),
        ("redis://a:6379/0?ssl_ca_certs=/ca.pem", "use rediss://"),
        ("redis+cluster://a:7000,,b:7001", "a host is missing"),
        ("redis+cluster://a:port", "not a port"),
        ("redis+sentinel://s1:26379", "names the service"),
        ("redis+sentinel://s1:26379/", "names the service"),
        ("redis+sentinel://s1:26379/mymaster/zero", "the database is a number"),
        ("redis+sentinel://s1:26379/mymaster/0/extra", "names the service"),
        ("redis:///0", "no host"),
        ("redis://localhost/x", "the database is a number"),
        ("unix://", "the socket's path"),
    ],
)
def test_a_url_that_cannot_work_is_refused_with_its_reason(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_redis_url(url)


@pytest.mark.parametrize(
    "setting", [name for name in ("cache_url", "redis_url") if name in Settings.model_fields]
)
def test_the_settings_refuse_it_naming_the_setting(setting: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings.model_validate({setting: "redis+cluster://127.0.0.1:7000/2"})
    errors = refused.value.errors()
    assert len(errors) == 1
    assert errors[0]["msg"] == (
        f"Value error, {setting.upper()}: Redis Cluster has database 0 only: "
        "end the URL with /0 or nothing"
    )


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
        "redis+sentinel://127.0.0.1:26379/mymaster/0",
    ],
)
def test_the_settings_take_every_topology(url: str) -> None:
    fields = {name: url for name in ("cache_url", "redis_url") if name in Settings.model_fields}
    assert Settings.model_validate(fields).cache_url == url


def test_the_cache_may_stay_in_memory() -> None:
    assert Settings(cache_url="memory://").cache_url == "memory://"


@pytest.mark.parametrize(
    "url",
    [
        "rediss://127.0.0.1:6380/0?ssl_ca_certs={ca}",
        "rediss+cluster://127.0.0.1:7000?ssl_ca_certs={ca}",
        "rediss+sentinel://127.0.0.1:26379/mymaster/0?ssl_ca_certs={ca}",
    ],
)
def test_every_tls_url_names_its_ca_file(url: str, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    url = url.format(ca=ca)

    assert parse_redis_url(url).ca_certs == str(ca)
    assert Settings(cache_url=url).cache_url == url


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_a_ca_file_that_cannot_be_read_is_refused_naming_the_setting(
    content: str | None, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_text(content)
    with pytest.raises(ValidationError) as refused:
        Settings(cache_url=f"rediss+cluster://127.0.0.1:7000?ssl_ca_certs={ca}")

    assert refused.value.errors()[0]["msg"].startswith(
        f"Value error, CACHE_URL: cannot read the CA file {ca}"
    )
