"""13. A cached item read while /metrics is scraped 30 times a second (with METRICS_TOKEN)."""

import json
import threading
import time
from collections import Counter

import httpx

from harness.context import METRICS_AUTH, Bench
from harness.results import Row, judge, measured
from harness.sections.http import _seed, _warm
from harness.stats import median

SECTION = "13. Scrape flood: a cached item read with and without 30 /metrics scrapes/s"
SCRAPES_PER_SECOND = 30
READERS, READ_RATE = 20, 10.0  # open-loop reads: 20 clients at 10 req/s, 200 req/s
INTERVALS = {"METRICS_RENDER_INTERVAL=1 (default)": "1", "METRICS_RENDER_INTERVAL=0 (render every scrape)": "0"}


class Scraper(threading.Thread):
    """GET /metrics with the token at a steady rate until stopped; counts the answers."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base, self.statuses, self.stopping = base, Counter[int](), threading.Event()
        self.seconds: list[float] = []  # each scrape's, as this client saw it
        self.body_bytes = 0

    def run(self) -> None:
        next_at = time.monotonic()
        with httpx.Client(base_url=self.base, headers=METRICS_AUTH, timeout=10) as client:
            while not self.stopping.is_set():
                started = time.perf_counter()
                answer = client.get("/metrics")
                self.seconds.append(time.perf_counter() - started)
                self.statuses[answer.status_code] += 1
                self.body_bytes = len(answer.content)
                next_at += 1 / SCRAPES_PER_SECOND
                self.stopping.wait(max(0.0, next_at - time.monotonic()))


def _reads(bench: Bench, url: str, scraped: bool, base: str) -> dict[str, float]:
    """The paced read load on `url`, with a scraper on `base` running alongside when `scraped`."""
    scraper = Scraper(base)
    if scraped:
        scraper.start()
    started = time.monotonic()
    try:
        args = (url, str(READERS), str(READ_RATE), str(bench.sizes.wrk_seconds * 2), "GET")
        found = json.loads(bench.run_script(bench.python("redis_queue"), "paced_load.py", "redis_queue", {}, *args))
    finally:
        scraper.stopping.set()
        if scraped:
            scraper.join()
    found["scrapes"] = sum(scraper.statuses.values())
    found["scrapes_ok"] = scraper.statuses[200]
    found["scrape_rate"] = found["scrapes"] / (time.monotonic() - started)
    found["scrape_ms"] = median(scraper.seconds) * 1000 if scraper.seconds else 0.0
    found["scrape_bytes"] = scraper.body_bytes
    return found


def run(bench: Bench) -> list[Row]:
    """Item-read p50/p99, scraped and not, with the rendered body reused (1 s) and not (0)."""
    env = bench.service_env("redis_queue", "bench-scrape")
    bench.migrate("redis_queue", env)
    python = bench.python("redis_queue")
    specs = [
        (f"uvicorn-scrape-{value}", python, "app.main:app", "redis_queue", {**env, "METRICS_RENDER_INTERVAL": value})
        for value in INTERVALS.values()
    ]
    servers = dict(zip(INTERVALS, bench.serve_many(specs), strict=True))
    item = f"/api/v1/items/{_seed(next(iter(servers.values())))}"
    for base in servers.values():
        _warm(base, item, expect_hit=True)
    found: dict[tuple[str, bool], list[dict[str, float]]] = {(s, f): [] for s in servers for f in (False, True)}
    for _ in range(bench.sizes.wrk_repeats):  # interleaved, so drifting load hits every case alike
        for label, base in servers.items():
            for scraped in (False, True):
                found[label, scraped].append(_reads(bench, base + item, scraped, base))
    rows = []
    for label in servers:
        quiet = found[label, False]
        for scraped in (False, True):
            runs = found[label, scraped]
            p99s = [r["p99"] for r in runs]
            failed = sum(int(r["failed"]) for r in runs)
            load = f"{READERS} clients × {READ_RATE:g} req/s"
            detail = f"p50 {median([r['p50'] for r in runs]):.2f} ms, {load}, failed {failed}"
            if scraped:
                ok, scrapes = sum(int(r["scrapes_ok"]) for r in runs), sum(int(r["scrapes"]) for r in runs)
                detail += (
                    f"; scrapes {ok}/{scrapes} answered 200, {median([r['scrape_rate'] for r in runs]):.1f}/s, "
                    f"each {median([r['scrape_ms'] for r in runs]):.2f} ms (p50), {runs[-1]['scrape_bytes']} bytes"
                )
            name = f"item read (response-cache HIT), {label}: {'30 scrapes/s' if scraped else 'no scrapes'}"
            row = measured(SECTION, name, p99s, "ms p99", detail=detail)
            if scraped:
                ratio = median([r / q["p99"] for r, q in zip(p99s, quiet, strict=True)])
                if label.endswith("(default)"):
                    passed = ratio <= 2 and failed == 0 and ok == scrapes
                    judge(row, ratio, "× p99 without scrapes", "≤ 2×, every scrape 200", passed)
                else:
                    row.ratio, row.ratio_of = ratio, "× p99 without scrapes"
            rows.append(row)
    return rows
