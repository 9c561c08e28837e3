"""What the bench ran on."""

import datetime
import os
import platform
import subprocess
from pathlib import Path


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def _version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "not installed"


def describe(python: str) -> dict[str, str]:
    """CPU, cores, memory, load, OS, Python, redis-server, wrk and the UTC date."""
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": f"{_memory_gib():.1f} GiB",
        "load average (1/5/15 min) at start": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "os": f"{platform.system()} {platform.release()}",
        "python": _version([python, "-c", "import sys; print(sys.version.split()[0])"]),
        "redis": _version(["redis-server", "--version"]).split(" sha=")[0],
        "wrk": _version(["wrk", "--version"]).splitlines()[0] if _version(["wrk", "--version"]) else "?",
    }
