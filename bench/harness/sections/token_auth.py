"""14. Token-verified vs open: the @cached HIT of an auth=oidc service beside the auth=none one."""

import json
import subprocess
import time

import httpx

from harness.context import SCRIPTS, Bench
from harness.results import Row, judge, measured
from harness.sections.http import ITEM, _seed, _warm
from harness.stats import median
from harness.wrk import WrkResult, run_wrk

SECTION = "14. Token-verified vs open: @cached HIT, auth=oidc with a valid token vs auth=none (wrk)"
OIDC = "redis_queue-oidc"
NO_STORE = SCRIPTS / "no_store.lua"


def _provider(bench: Bench) -> tuple["subprocess.Popen[bytes]", dict[str, str]]:
    """Start the bench's OpenID Connect provider; its process and what it printed."""
    log = bench.procs.log_dir / "identity-provider.log"
    offset = log.stat().st_size if log.exists() else 0
    project = bench.project(OIDC)
    argv = [bench.python(OIDC), str(SCRIPTS / "identity_provider.py")]
    process = bench.procs.spawn("identity-provider", argv, cwd=project, env={"PYTHONPATH": str(project)})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = log.read_bytes()[offset:].decode(errors="replace").splitlines()
        if lines and lines[0].startswith("{"):
            return process, json.loads(lines[0])
        if process.poll() is not None:
            raise RuntimeError(f"the identity provider exited:\n{lines[-20:]}")
        time.sleep(0.1)
    raise TimeoutError("the identity provider printed nothing in 60 s")


def _fetches(bench: Bench, process: "subprocess.Popen[bytes]") -> int:
    """Stop the provider; how many times it served its JWKS."""
    bench.procs.stop(process)
    text = (bench.procs.log_dir / "identity-provider.log").read_text(errors="replace")
    last = [line for line in text.splitlines() if line.startswith('{"jwks_fetches"')][-1]
    return int(json.loads(last)["jwks_fetches"])


def _servers(bench: Bench, provider: dict[str, str]) -> tuple[str, str]:
    """The auth=oidc service pointed at the provider, and the auth=none one; their URLs."""
    oidc = bench.service_env(OIDC, "bench-oidc", AUTH_ISSUER=provider["issuer"], AUTH_AUDIENCE=provider["audience"])
    bench.migrate(OIDC, oidc)
    opened = bench.service_env("redis_queue", "bench-open")
    bench.migrate("redis_queue", opened)
    oidc_base, open_base = bench.serve_many(
        [
            ("uvicorn-oidc", bench.python(OIDC), "app.main:app", OIDC, oidc),
            ("uvicorn-open", bench.python("redis_queue"), "app.main:app", "redis_queue", opened),
        ]
    )
    return oidc_base, open_base


def _verified_item(base: str, auth: dict[str, str]) -> str:
    """Seed an item with the token, check that the read refuses no token, warm it with one."""
    with httpx.Client(base_url=base, timeout=10) as client:
        item = f"/api/v1/items/{client.post('/api/v1/items', json=ITEM, headers=auth).raise_for_status().json()['id']}"
        if client.get(item).status_code != 401:
            raise RuntimeError(f"{item}: a request without a token was not refused")
        for _ in range(3):
            client.get(item, headers=auth).raise_for_status()
    return item


def run(bench: Bench) -> list[Row]:
    """wrk on the @cached read: with a valid bearer token (verified each request) and open."""
    process, provider = _provider(bench)
    oidc_base, open_base = _servers(bench, provider)
    auth = {"authorization": f"Bearer {provider['token']}"}
    oidc_item = _verified_item(oidc_base, auth)
    token_script = bench.out / "bearer_no_store.lua"
    token_script.write_text(
        f'wrk.headers["Authorization"] = "{auth["authorization"]}"\nwrk.headers["Cache-Control"] = "no-store"\n'
    )
    open_item = f"/api/v1/items/{_seed(open_base)}"
    _warm(open_base, open_item, expect_hit=True)
    systems = {
        "auth=oidc, a valid bearer token (request no-store)": (oidc_base + oidc_item, token_script),
        "auth=none, open (request no-store)": (open_base + open_item, NO_STORE),
    }
    sizes = bench.sizes
    results: dict[str, list[WrkResult]] = {name: [] for name in systems}
    for _ in range(sizes.wrk_repeats):  # interleaved, so drifting load hits both alike
        for name, (url, script) in systems.items():
            results[name].append(
                run_wrk(url, seconds=sizes.wrk_seconds, connections=sizes.wrk_connections, script=script)
            )
    fetches = _fetches(bench, process)
    verified, opened = results.values()
    requests = sum(r.requests for r in verified)
    rows = []
    for name, runs in results.items():
        failures = sum(r.non_2xx + r.errors for r in runs)
        detail = (
            f"p50 {median([r.p50 for r in runs]):.2f} ms, p99 {median([r.p99 for r in runs]):.2f} ms, "
            f"non-2xx + socket errors: {failures}"
        )
        if runs is verified:
            detail += f"; JWKS fetched {fetches} times for {requests} verified requests"
        row = measured(SECTION, name, [r.rps for r in runs], "req/s", detail=detail)
        if runs is verified:
            ratio = median([v.rps / o.rps for v, o in zip(verified, opened, strict=True)])
            passed = ratio >= 0.9 and failures == 0 and fetches <= 2
            judge(row, ratio, "× auth=none", "≥ 0.9×, keys not fetched per request", passed)
        rows.append(row)
    return rows
