"""TLS in `DATABASE_URL`: libpq's `sslmode` and `sslrootcert`, read for asyncpg (no connection).

SQLAlchemy hands every query parameter of the URL to `asyncpg.connect` as a keyword, and
asyncpg has no `sslmode` or `sslrootcert` keyword: they are taken out of the URL here and
become asyncpg's one `ssl` argument. `ssl` (asyncpg's own name) is read the same way.

- `disable`, `allow`, `prefer`, `require` and, without a CA file, `verify-ca` / `verify-full`
  go to asyncpg as the mode, which then looks for a CA where libpq does (`PGSSLROOTCERT`,
  then `~/.postgresql/root.crt`; `require` verifies only if it finds one there);
- with a CA file (the URL's `sslrootcert`, else DATABASE_SSL_ROOT_CERT), `require`,
  `verify-ca` and `verify-full` become an `ssl.SSLContext` that trusts that file alone and
  requires a certificate it signed; `verify-full` also checks the host name against it.

An SSLContext never falls back to plaintext. No `sslmode` at all is asyncpg's `prefer`.
`verify-ca` / `verify-full` with no CA to be found anywhere stop the start, as does anything
else here that could not work.
"""

import os
import ssl
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_VERIFYING = ("require", "verify-ca", "verify-full")
_TLS_PARAMETERS = ("sslmode", "ssl", "sslrootcert")
# libpq's other TLS parameters, which this translation does not carry to asyncpg.
_UNSUPPORTED = ("sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir", "sslnegotiation")

SslArgument = str | ssl.SSLContext | None  # asyncpg's `ssl`; None: its default (`prefer`)


def split_tls(url: str, root_cert: Path | None) -> tuple[str, SslArgument]:
    """`url` without its TLS parameters, and asyncpg's `ssl` argument for them.

    `root_cert` is DATABASE_SSL_ROOT_CERT. Raise ValueError saying why they cannot work.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = [name for name, _ in query]
    tls = {name: value for name, value in query if name in _TLS_PARAMETERS}
    if url.startswith("sqlite"):
        if tls or root_cert is not None:
            raise ValueError("SQLite opens a local file: TLS parameters do not apply to it")
        return url, None
    if unsupported := sorted(set(names) & set(_UNSUPPORTED)):
        raise ValueError(f"{', '.join(unsupported)}: not supported; use sslmode and sslrootcert")
    if not tls and root_cert is None:
        return url, None  # asyncpg's default, and the URL exactly as given
    if len(tls) != sum(names.count(name) for name in _TLS_PARAMETERS) or (
        "ssl" in tls and "sslmode" in tls
    ):
        raise ValueError("give sslmode (or asyncpg's ssl) and sslrootcert once each")
    name = "ssl" if "ssl" in tls else "sslmode"
    mode = tls.get(name)
    if mode is not None and mode not in MODES:
        raise ValueError(f"{name}={mode!r} is not one of {', '.join(MODES)}")
    cafile = Path(tls["sslrootcert"]) if "sslrootcert" in tls else root_cert
    source = "sslrootcert" if "sslrootcert" in tls else "DATABASE_SSL_ROOT_CERT"
    if cafile is not None and mode not in _VERIFYING:
        raise ValueError(
            f"{source} names a CA file, but sslmode={mode or 'prefer'} never checks the "
            "server's certificate: add sslmode=verify-full"
        )
    rest = urlencode([(name, value) for name, value in query if name not in _TLS_PARAMETERS])
    plain = urlunsplit(parts._replace(query=rest))
    if cafile is None:
        if mode in ("verify-ca", "verify-full") and not _libpq_root_cert():
            raise ValueError(
                f"sslmode={mode} needs the CA that signed the server's certificate: "
                "sslrootcert=/path/ca.pem, DATABASE_SSL_ROOT_CERT or PGSSLROOTCERT"
            )
        return plain, mode
    return plain, _verifying_context(cafile, source, check_hostname=mode == "verify-full")


def _libpq_root_cert() -> bool:
    """Whether asyncpg will find a CA where libpq looks: PGSSLROOTCERT, ~/.postgresql/root.crt."""
    home = os.environ.get("HOME")
    return bool(os.environ.get("PGSSLROOTCERT")) or (
        home is not None and (Path(home) / ".postgresql" / "root.crt").is_file()
    )


def _verifying_context(cafile: Path, source: str, *, check_hostname: bool) -> ssl.SSLContext:
    """A context that trusts only `cafile`'s CAs and requires a certificate they signed."""
    try:
        context = ssl.create_default_context(cafile=str(cafile))
    except OSError as error:  # ssl.SSLError too: not a PEM file of certificates
        raise ValueError(f"{source}: cannot read the CA file {cafile}: {error}") from None
    context.check_hostname = check_hostname
    return context
