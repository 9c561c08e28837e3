"""prometheus-client's multiprocess mode: the bookkeeping of processes that start and stop.

Each process writes its values to files named after its pid in PROMETHEUS_MULTIPROC_DIR.
The counters and histograms of a process that ended stay there and are still summed (a
restart never makes a counter go back); its live gauges (`http_requests_in_progress`) go
with it: a process removes its own when it stops, and the next `/metrics` removes those of a
process that was killed. Whoever starts the processes empties the directory first.
"""

import contextlib
import os
import re
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def check_environment(directory: Path) -> None:
    """Refuse to start when prometheus-client would not write its values to `directory`."""
    exported = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if exported is None or Path(exported) != directory:
        raise RuntimeError(
            "PROMETHEUS_MULTIPROC_DIR must be set in the process's environment, not only in"
            " .env: prometheus-client reads it from there when it is imported"
        )
    if not directory.is_dir():
        raise RuntimeError(
            f"PROMETHEUS_MULTIPROC_DIR={directory} is not a directory: create it, empty,"
            " before the first process starts"
        )


def forget_process(pid: int, directory: Path) -> None:
    """Drop the live gauges of process `pid` (its counters and histograms stay)."""
    with contextlib.suppress(FileNotFoundError):  # another process removed them first
        mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def forget_dead_processes(directory: Path) -> None:
    """Drop the live gauges of every process that wrote to `directory` and is gone."""
    for path in directory.glob("gauge_live*.db"):
        match = _LIVE_GAUGE_FILE.fullmatch(path.name)
        if match is not None and not _alive(int(match[1])):
            forget_process(int(match[1]), directory)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    with contextlib.suppress(OSError):  # no /proc (not Linux): trust kill
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        return state != "Z"
    return True
