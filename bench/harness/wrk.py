"""Run wrk (a separate process, loopback only, bounded in time) and parse what it prints."""

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


@dataclass(frozen=True)
class WrkResult:
    """Requests/s, latency percentiles (ms), non-2xx/3xx responses and socket errors."""

    rps: float
    p50: float
    p99: float
    requests: int
    non_2xx: int
    errors: int


def run_wrk(
    url: str,
    *,
    seconds: float,
    connections: int = 32,
    threads: int = 1,
    script: Path | None = None,
    timeout_s: float = 5.0,
) -> WrkResult:
    """One wrk run against `url` (127.0.0.1 only)."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"loopback only: {url}")
    argv = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        f"{timeout_s:g}s",
        "--latency",
    ]
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx_match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors_match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        rps=rps,
        p50=p50,
        p99=p99,
        requests=requests,
        non_2xx=int(non_2xx_match.group(1)) if non_2xx_match else 0,
        errors=sum(int(x) for x in errors_match.groups()) if errors_match else 0,
    )
