"""PostgreSQL and redis-server with TLS on and plaintext off, under a throwaway CA (trustme).

The servers' certificate names 127.0.0.1 alone (PostgreSQL also listens on 127.0.0.2, a name
the certificate lacks). `other_ca` signed nothing: a client that trusts it must refuse them.
"""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import trustme

from tests.servers import PostgresServer, free_port, require_binary, wait_for_port


@dataclass
class Authorities:
    """The CA that signed the servers' certificate and one that did not, as PEM files."""

    directory: Path
    ca: trustme.CA = field(default_factory=trustme.CA)
    other_ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        self.server = self.ca.issue_cert("127.0.0.1")
        self.server.cert_chain_pems[0].write_to_path(str(self.cert_file))
        self.server.private_key_pem.write_to_path(str(self.key_file))
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.other_ca.cert_pem.write_to_path(str(self.other_ca_file))

    @property
    def ca_file(self) -> Path:
        """The CA that signed the server certificate."""
        return self.directory / "ca.pem"

    @property
    def other_ca_file(self) -> Path:
        """A CA that signed nothing the servers present."""
        return self.directory / "other-ca.pem"

    @property
    def cert_file(self) -> Path:
        """The servers' certificate."""
        return self.directory / "server.pem"

    @property
    def key_file(self) -> Path:
        """The servers' private key."""
        return self.directory / "server.key"


def enable_postgres_tls(server: PostgresServer, authorities: Authorities) -> None:
    """Turn TLS on in an initialised (not yet started) cluster and accept TCP only over TLS.

    The key must be the server user's own, mode 0600, or PostgreSQL refuses to start. The
    Unix socket stays open, for `pg_ctl -w` (it is not the network).
    """
    data = server.workdir / "data"
    for source, name in (
        (authorities.cert_file, "server.crt"),
        (authorities.key_file, "server.key"),
    ):
        shutil.copyfile(source, data / name)
        (data / name).chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(data / name, user="postgres", group="postgres")
    with (data / "postgresql.conf").open("a") as conf:
        conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    (data / "pg_hba.conf").write_text("local all all trust\nhostssl all all 127.0.0.0/8 trust\n")


@contextlib.contextmanager
def running_tls_postgres(authorities: Authorities) -> Iterator[PostgresServer]:
    """A fresh PostgreSQL cluster that answers on TCP over TLS only."""
    server = PostgresServer(listen_addresses="127.0.0.1,127.0.0.2")
    try:
        server.init()
        enable_postgres_tls(server, authorities)
        server.start()
        yield server
    finally:
        server.stop()
        server.remove()


@contextlib.contextmanager
def running_tls_redis(authorities: Authorities, *, cluster: bool = False) -> Iterator[int]:
    """A redis-server on TLS only (no plaintext port) at 127.0.0.1 and 127.0.0.2; its port.

    `cluster`: a Redis Cluster of this one node, which holds every slot, its bus over TLS too.
    """
    port = free_port()
    tls = {
        "--tls-cert-file": authorities.cert_file,
        "--tls-key-file": authorities.key_file,
        "--tls-ca-cert-file": authorities.ca_file,
    }
    with tempfile.TemporaryDirectory(prefix="test-redis-tls-") as directory:
        nodes = ["--cluster-enabled", "yes", "--cluster-port", str(free_port())]
        nodes += ["--tls-cluster", "yes", "--dir", directory]
        process = subprocess.Popen(
            [
                require_binary("redis-server"),
                *("--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1 127.0.0.2"),
                *("--tls-auth-clients", "no", "--save", "", "--appendonly", "no"),
                *(str(part) for option in tls.items() for part in option),
                *(nodes if cluster else []),
                *("--loglevel", "warning"),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port)
            if cluster:
                _hold_every_slot(port, authorities)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=10)


def _hold_every_slot(port: int, authorities: Authorities) -> None:
    """Give the one node every slot and wait until it says the cluster is ok."""
    node = redis.Redis("127.0.0.1", port, ssl=True, ssl_ca_certs=str(authorities.ca_file))
    try:
        node.cluster("ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 10
        while node.cluster("INFO")["cluster_state"] != "ok":
            if time.monotonic() > deadline:
                raise TimeoutError("the one-node cluster is not ok after 10 s")
            time.sleep(0.05)
    finally:
        node.close()


@pytest.fixture(scope="module")
def authorities(tmp_path_factory: pytest.TempPathFactory) -> Authorities:
    """The CA that signed the server's certificate, and one that did not."""
    return Authorities(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_port(authorities: Authorities) -> Iterator[int]:
    """A redis-server of the importing module's own, on TLS only."""
    with running_tls_redis(authorities) as port:
        yield port
