"""TLS parameters of DATABASE_URL that cannot work stop the start with one message naming it."""

import ssl
from pathlib import Path

import pytest
import trustme
from pydantic import ValidationError

from app.config import Settings
from app.database_urls import split_tls

POSTGRES = "postgresql+asyncpg://app:secret@db.example.com:5432/app"


@pytest.fixture(autouse=True)
def no_libpq_root_cert(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CA where libpq (and asyncpg) would look for one, unless a test puts it there."""
    monkeypatch.delenv("PGSSLROOTCERT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA certificate as a PEM file."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


@pytest.mark.parametrize(
    ("url", "root_cert", "reason"),
    [
        (f"{POSTGRES}?sslmode=verify_full", None, "sslmode='verify_full' is not one of"),
        (f"{POSTGRES}?sslmode=", None, "sslmode='' is not one of"),
        (f"{POSTGRES}?ssl=true", None, "ssl='true' is not one of"),
        (f"{POSTGRES}?sslmode=require&sslmode=disable", None, "once each"),
        (f"{POSTGRES}?sslmode=require&ssl=require", None, "once each"),
        (f"{POSTGRES}?sslmode=require&sslcert=/c.pem", None, "sslcert: not supported"),
        (f"{POSTGRES}?sslrootcert=CA", None, "sslmode=prefer never checks"),
        (f"{POSTGRES}?sslmode=allow&sslrootcert=CA", None, "sslmode=allow never checks"),
        (POSTGRES, "CA", "DATABASE_SSL_ROOT_CERT names a CA file, but sslmode=prefer"),
        (f"{POSTGRES}?sslmode=verify-full&sslrootcert=/nonexistent.pem", None, "cannot read"),
        (f"{POSTGRES}?sslmode=verify-ca", "/nonexistent.pem", "DATABASE_SSL_ROOT_CERT: cannot"),
        (f"{POSTGRES}?sslmode=verify-full", None, "needs the CA that signed"),
        (f"{POSTGRES}?ssl=verify-ca", None, "needs the CA that signed"),
        ("sqlite+aiosqlite:///./app.db?sslmode=require", None, "SQLite opens a local file"),
        ("sqlite+aiosqlite:///./app.db", "CA", "SQLite opens a local file"),
    ],
)
def test_tls_parameters_that_cannot_work_are_refused_naming_database_url(
    url: str, root_cert: str | None, reason: str, ca_file: Path
) -> None:
    url = url.replace("sslrootcert=CA", f"sslrootcert={ca_file}")
    settings = {"database_ssl_root_cert": ca_file if root_cert == "CA" else root_cert}
    with pytest.raises(ValidationError) as refused:
        Settings(database_url=url, **settings)  # type: ignore[arg-type]

    errors = refused.value.errors()
    assert len(errors) == 1
    assert errors[0]["msg"].startswith("Value error, DATABASE_URL: ")
    assert reason in errors[0]["msg"]


def test_an_unreadable_ca_file_is_refused(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="cannot read the CA file"):
        split_tls(f"{POSTGRES}?sslmode=verify-full&sslrootcert={not_pem}", None)


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require"])
def test_a_mode_without_a_ca_file_goes_to_asyncpg_as_its_mode(mode: str) -> None:
    url, tls = split_tls(f"{POSTGRES}?application_name=api&sslmode={mode}", None)

    assert (url, tls) == (f"{POSTGRES}?application_name=api", mode)


@pytest.mark.parametrize("where", ["PGSSLROOTCERT", "~/.postgresql/root.crt"])
def test_verify_full_leaves_asyncpg_to_find_the_ca_where_libpq_does(
    where: str, ca_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if where == "PGSSLROOTCERT":
        monkeypatch.setenv("PGSSLROOTCERT", str(ca_file))
    else:
        (tmp_path / ".postgresql").mkdir()
        (tmp_path / ".postgresql" / "root.crt").write_bytes(ca_file.read_bytes())

    assert split_tls(f"{POSTGRES}?sslmode=verify-full", None) == (POSTGRES, "verify-full")


@pytest.mark.parametrize(
    ("mode", "checks_hostname"), [("require", False), ("verify-ca", False), ("verify-full", True)]
)
def test_a_ca_file_makes_a_context_that_requires_a_certificate_it_signed(
    mode: str, checks_hostname: bool, ca_file: Path
) -> None:
    url, tls = split_tls(f"{POSTGRES}?sslmode={mode}", ca_file)

    assert url == POSTGRES
    assert isinstance(tls, ssl.SSLContext)
    assert tls.verify_mode == ssl.CERT_REQUIRED
    assert tls.check_hostname is checks_hostname
    assert len(tls.get_ca_certs()) == 1  # that CA alone, not the system's


def test_no_tls_parameters_leave_the_url_and_asyncpg_s_default() -> None:
    assert split_tls(POSTGRES, None) == (POSTGRES, None)
    assert Settings(database_url=f"{POSTGRES}?sslmode=require").database_url.endswith(
        "?sslmode=require"
    )
