"""Run every benchmark side by side and write the results into bench/README.md.

    uv run --project bench python bench/run.py            # the full run (about 15 minutes)
    uv run --project bench python bench/run.py --quick    # the smoke run (tiny sizes, < 2 minutes)

It renders the services it needs from the template into bench/out/, `uv sync`s them, starts a
redis-server on a free loopback port (and workers), runs each section and stops everything it
started, also on error. Exit status 1 when a benchmark crashed (missing targets do not count).
"""

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import machine, report
from harness.context import BENCH, Bench, Sizes
from harness.procs import RedisServer, processes
from harness.results import Row
from harness.sections import (
    decorator,
    failover,
    http,
    invalidation,
    key_flood,
    rate_limit,
    scrape_flood,
    stampede,
    tasks,
    template,
    token_auth,
    topologies,
    tracing,
    visibility,
)

SECTIONS: dict[str, Callable[[Bench], list[Row]]] = {
    "http": http.run,
    "decorator": decorator.run,
    "invalidation": invalidation.run,
    "stampede": stampede.run,
    "tasks": tasks.run,
    "tracing": tracing.run,
    "visibility": visibility.run,
    "topologies": topologies.run,
    "rate_limit": rate_limit.run,
    "key_flood": key_flood.run,
    "scrape_flood": scrape_flood.run,
    "token_auth": token_auth.run,
    "failover": failover.run,
    "template": template.run,
}
COMMAND = "uv run --project bench python bench/run.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, numbers not written")
    parser.add_argument("--only", nargs="*", choices=list(SECTIONS), help="run only these sections")
    parser.add_argument("--write", action="store_true", help="write README.md even with --quick or --only")
    args = parser.parse_args()
    sizes = Sizes.pick(args.quick)
    # Only a full run replaces the published table and plots: a partial one would drop sections.
    publish = args.write or not (args.quick or args.only)
    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    started = time.monotonic()
    rows: list[Row] = []
    crashed: list[str] = []
    about = machine.describe(sys.executable)
    with processes(out / "logs") as procs:
        redis = RedisServer(procs)
        redis.start()
        about["redis"] += " (redis-server on 127.0.0.1, no persistence)"
        with tempfile.TemporaryDirectory(prefix="bench-", dir=out) as scratch:
            bench = Bench(args.quick, sizes, Path(scratch), procs, redis, publish)
            for name, section in SECTIONS.items():
                if args.only and name not in args.only:
                    continue
                began = time.monotonic()
                print(f"== {name}", flush=True)
                try:
                    redis.cli("FLUSHALL")
                    found = section(bench)
                except Exception:
                    crashed.append(name)
                    traceback.print_exc()
                    found = [Row(f"{name} (crashed)", name, note="not yet measured: the benchmark crashed")]
                finally:
                    procs.stop_all(keep=[redis.process])
                for row in found:
                    print(
                        f"   {row.system}: {row.value} {row.unit} {row.detail} ratio={row.ratio} "
                        f"{row.target} {row.passed} {row.note}",
                        flush=True,
                    )
                rows += found
                print(f"   ({time.monotonic() - began:.1f}s)", flush=True)
            if "bench_python" in vars(bench):  # a section built the competitors' environment
                about["libraries (ours and competitors, one environment)"] = bench.library_versions()
    elapsed = time.monotonic() - started
    (out / "results.json").write_text(json.dumps({"machine": about, "rows": [asdict(r) for r in rows]}, indent=1))
    if publish:
        report.write_readme(BENCH / "README.md", render_results(about, rows, bench.plots, args.quick, elapsed))
    print(f"done in {elapsed:.0f}s; crashed: {crashed or 'none'}")
    return 1 if crashed else 0


def render_results(about: dict[str, str], rows: list[Row], plots: dict[str, Path], quick: bool, elapsed: float) -> str:
    """The generated part of the README: machine, table, plots."""
    lines = [
        f"Command: `{COMMAND}{' --quick' if quick else ''}` — took {elapsed / 60:.1f} min.",
        "",
        "| Machine | |",
        "|---|---|",
    ]
    lines += [f"| {key} | {value} |" for key, value in about.items()]
    lines.append(report.table(rows))
    lines.append("")
    for title, path in plots.items():
        lines += [f"![{title}]({path.relative_to(BENCH).as_posix()})", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
