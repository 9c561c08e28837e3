"""Request ids behind a proxy, through a real uvicorn: the peer address decides.

The server listens on 127.0.0.1 and trusts FORWARDED_ALLOW_IPS=127.0.0.1 (the default); a
client connecting from 127.0.0.1 stands for the proxy, one from 127.0.0.2 for anyone else.
"""

import json
import os
import subprocess

import httpx
import pytest

from app.config import Settings
from tests.servers import wait_for_port
from tests.uvicorn_servers import Server, settings_env

pytestmark = pytest.mark.slow
MISSING = "/nowhere"  # its 404 is logged, with the request's ids (whatever the auth)


def get_from(address: str, url: str, request_id: str) -> httpx.Response:
    """GET `url` over a connection opened from the local address `address`."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(transport=transport, timeout=30) as http:
        return http.get(url, headers={"X-Request-ID": request_id})


def test_only_a_trusted_peers_request_id_is_kept(settings: Settings) -> None:
    env = {**os.environ, **settings_env(settings.model_copy(update={"log_format": "json"}))}
    server = Server(env, "--no-proxy-headers", "--log-level", "info", stderr=subprocess.PIPE)
    try:
        wait_for_port(server.port, timeout=60)
        proxied = get_from("127.0.0.1", f"{server.url}{MISSING}", "edge-1")
        direct = get_from("127.0.0.2", f"{server.url}{MISSING}", "edge-2")
    finally:
        server.stop()
        _, errors = server.process.communicate(timeout=30)
    logged = [json.loads(line) for line in errors.decode().splitlines() if line.startswith("{")]
    answered = {
        entry["request_id"]: entry for entry in logged if entry["message"].startswith("answered")
    }

    assert proxied.status_code == direct.status_code == 404
    assert proxied.headers["x-request-id"] == "edge-1"
    assert "client_request_id" not in answered["edge-1"]
    made = direct.headers["x-request-id"]
    assert made != "edge-2"
    assert direct.json()["request_id"] == made
    assert answered[made]["client_request_id"] == "edge-2"
