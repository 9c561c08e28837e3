"""Redis URLs for every topology, read without connecting (the settings refuse bad ones).

- `redis://`, `rediss://`, `unix://`: one node, redis-py's own URL (options in the query);
- `redis+cluster://[user:password@]host:port,host:port[/0]` (`rediss+cluster://` over TLS):
  Redis Cluster, found from any one of the seed nodes; it has database 0 only;
- `redis+sentinel://[user:password@]host:port,host:port/<service_name>[/<db>]`
  (`rediss+sentinel://`): the primary the Sentinels name for `service_name`, found again
  after every failover. The URL's password is the primary's, and the Sentinels' too unless
  REDIS_SENTINEL_PASSWORD says otherwise.

The schemes are those of the `limits` library. A port left out is 6379 (26379 for a Sentinel).
Over TLS (`rediss`), every URL may name the CA that signed the servers' certificates,
`?ssl_ca_certs=/path/ca.pem`, instead of the system's; the certificate and the host name are
always checked.
"""

import ssl
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.connection import parse_url

Topology = Literal["node", "cluster", "sentinel"]
SCHEMES = (
    "redis://, rediss://, unix://, redis+cluster://, rediss+cluster://, "
    "redis+sentinel:// or rediss+sentinel://"
)


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """What a Redis URL names: one node (`url` as given), a cluster or a Sentinel group."""

    topology: Topology
    url: str
    tls: bool = False
    nodes: tuple[tuple[str, int], ...] = ()  # cluster seeds or Sentinels
    username: str | None = None
    password: str | None = None
    db: int = 0
    service_name: str = ""  # Sentinel only
    ca_certs: str | None = None  # `ssl_ca_certs`: the CA file TLS trusts instead of the system's


def parse_redis_url(url: str) -> RedisUrl:
    """Read `url`; raise ValueError saying why it cannot work (no connection is made)."""
    scheme, separator, _ = url.partition("://")
    scheme = scheme.lower()
    if not separator:
        raise ValueError(f"not a URL; expected one of {SCHEMES}")
    if scheme in ("redis", "rediss", "unix"):
        return _one_node(url, scheme)
    base, _, topology = scheme.partition("+")
    if base not in ("redis", "rediss") or topology not in ("cluster", "sentinel"):
        raise ValueError(f"unknown scheme {scheme + '://'!r}; expected one of {SCHEMES}")
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.fragment or len(query) > 1 or any(name != "ssl_ca_certs" for name, _ in query):
        raise ValueError(f"{scheme}:// URLs take no options after '?' or '#' but ssl_ca_certs")
    ca_certs = _ca_certs(scheme, query[0][1] if query else None)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    default_port = 26379 if topology == "sentinel" else 6379
    nodes = tuple(_host_port(host, default_port) for host in hosts.split(","))
    path = parts.path.strip("/").split("/") if parts.path.strip("/") else []
    tls, user, secret = base == "rediss", unquote(username) or None, unquote(password) or None
    if topology == "cluster":
        if path not in ([], ["0"]):
            raise ValueError("Redis Cluster has database 0 only: end the URL with /0 or nothing")
        return RedisUrl("cluster", url, tls, nodes, user, secret, ca_certs=ca_certs)
    if not path or not path[0] or len(path) > 2:
        raise ValueError(
            "a Sentinel URL names the service and may name the database: "
            "redis+sentinel://host:port,host:port/<service_name>/<db>"
        )
    db = _database(path[1]) if len(path) == 2 else 0
    return RedisUrl("sentinel", url, tls, nodes, user, secret, db, unquote(path[0]), ca_certs)


def _one_node(url: str, scheme: str) -> RedisUrl:
    """A one-node URL, checked by redis-py's own parser."""
    options = parse_url(url)  # type: ignore[no-untyped-call]
    if scheme == "unix" and not options.get("path"):
        raise ValueError("a unix:// URL names the socket's path: unix:///run/redis.sock")
    if scheme != "unix" and not urlsplit(url).hostname:
        raise ValueError(f"no host in the {scheme}:// URL: {scheme}://host:port/<db>")
    if scheme != "unix" and urlsplit(url).path.strip("/"):
        _database(urlsplit(url).path.strip("/"))  # redis-py would read database 0
    ca_certs = _ca_certs(scheme, options.get("ssl_ca_certs"))
    return RedisUrl(
        "node", url, scheme == "rediss", db=int(options.get("db") or 0), ca_certs=ca_certs
    )


def _ca_certs(scheme: str, ca_certs: str | None) -> str | None:
    """The URL's `ssl_ca_certs`, which only a TLS scheme can use."""
    if ca_certs is not None and not scheme.startswith("rediss"):
        raise ValueError(f"ssl_ca_certs is for TLS: use rediss{scheme.removeprefix('redis')}://")
    return ca_certs


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`, or a host alone) as a pair."""
    parts = urlsplit(f"//{text}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"not a port in {text!r}") from None
    if not parts.hostname:
        raise ValueError(f"a host is missing in {text!r}: list them as host:port,host:port")
    return parts.hostname, port or default_port


def _database(text: str) -> int:
    """A database number from the URL's path."""
    if not text.isdigit():
        raise ValueError(f"the database is a number, not {text!r}")
    return int(text)


def check_redis_url(setting: str, url: str) -> str:
    """`url` unchanged if it can work, else ValueError naming `setting` and the reason."""
    try:
        target = parse_redis_url(url)
    except ValueError as error:
        raise ValueError(f"{setting}: {error}") from None
    if target.ca_certs is not None:
        try:
            ssl.create_default_context(cafile=target.ca_certs)
        except OSError as error:  # ssl.SSLError too: not a PEM file of certificates
            raise ValueError(
                f"{setting}: cannot read the CA file {target.ca_certs}: {error}"
            ) from None
    return url
