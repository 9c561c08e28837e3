"""What every section shares: sizes, processes, the Redis server and the rendered services."""

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from harness.procs import Processes, RedisServer, free_ports, wait_for_port
from harness.render import environment, export_pins, render, sync
from harness.results import Row

BENCH = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "bench-admin-token"  # auth=none projects: the operator routes' bearer
METRICS_TOKEN = "bench-metrics-token"  # /metrics on the main port needs it
METRICS_AUTH = {"authorization": f"Bearer {METRICS_TOKEN}"}
SCRIPTS = BENCH / "scripts"
# What users would pick instead, pinned so that runs compare like with like.
# jinja2: fastapi-cache2 imports starlette.templating without declaring it.
COMPETITORS = ("fastapi-cache2==0.2.2", "jinja2==3.1.6", "cashews==7.6.0", "aiocache==0.12.3", "httpx==0.28.1")
ARQ = "arq==0.28.0"
# Services rendered with other answers than the defaults, named like a backend where one is asked for.
VARIANTS = {
    "redis_queue-no-otel": {"task_backend": "redis_queue", "use_opentelemetry": "no"},
    "redis_queue-oidc": {"task_backend": "redis_queue", "auth": "oidc"},
}


@dataclass(frozen=True)
class Sizes:
    """How much work each section does; `--quick` shrinks everything."""

    wrk_seconds: float
    wrk_repeats: int
    wrk_connections: int
    hits: int
    hit_repeats: int
    keyspaces: tuple[int, ...]
    invalidation_repeats: int
    stampede_repeats: int
    tasks: int
    task_repeats: int
    kill_tasks: int
    visibility_timeout: int
    render_all: bool

    @classmethod
    def pick(cls, quick: bool) -> "Sizes":
        """Tiny sizes for the smoke run, real ones otherwise."""
        if quick:
            return cls(1, 1, 16, 200, 2, (0, 10_000), 2, 1, 100, 1, 12, 3, False)
        return cls(5, 3, 32, 3000, 5, (0, 10_000, 1_000_000), 5, 5, 2000, 3, 30, 5, True)


@dataclass
class Bench:
    """The run's shared state."""

    quick: bool
    sizes: Sizes
    out: Path
    procs: Processes
    redis: RedisServer
    publish: bool = False  # write bench/plots (full runs); otherwise plots go to bench/out/plots
    projects: dict[str, Path] = field(default_factory=dict)
    plots: dict[str, Path] = field(default_factory=dict)
    workers: dict[str, "subprocess.Popen[bytes]"] = field(default_factory=dict)
    servers: dict[str, "subprocess.Popen[bytes]"] = field(default_factory=dict)

    @cached_property
    def bench_python(self) -> str:
        """An interpreter with the service's own resolved dependencies plus the competitor libraries.

        Our code is measured with the library versions the generated service installs (not the
        bench's lock), and the competitors run in the same process against the same versions.
        arq, which pins redis-py below 6, gets an environment of its own (`arq_python`).
        """
        pins = export_pins(self.project("redis_queue"), self.out / "service-pins.txt")
        return environment(self.out / "competitors", "-r", str(pins), *COMPETITORS)

    @cached_property
    def arq_python(self) -> str:
        """An interpreter with arq alone (its redis-py pin conflicts with the service's)."""
        return environment(self.out / "arq", ARQ)

    def library_versions(self) -> str:
        """The versions of the libraries that decide cache speed, in the competitors' environment."""
        names = ("redis", "hiredis", "pydantic", "fastapi", "sqlalchemy", *(c.split("==")[0] for c in COMPETITORS))
        script = "import importlib.metadata as m, sys; print(', '.join(f'{n} {m.version(n)}' for n in sys.argv[1:]))"
        found = subprocess.run(
            [self.bench_python, "-c", script, *names], capture_output=True, text=True, check=True, timeout=60
        )
        return f"{found.stdout.strip()}; {ARQ}"

    def project(self, backend: str) -> Path:
        """The service rendered with `backend` (or a variant of VARIANTS) and sqlite, synced; rendered
        once per run."""
        if backend not in self.projects:
            answers = VARIANTS.get(backend, {"task_backend": backend})
            project = render(self.out / backend, database="sqlite", **answers)
            sync(project)
            self.projects[backend] = project
        return self.projects[backend]

    def python(self, backend: str) -> str:
        """The interpreter of a rendered service."""
        return str(self.project(backend) / ".venv" / "bin" / "python")

    def service_env(self, backend: str, prefix: str, **extra: str) -> dict[str, str]:
        """Environment for a rendered service: its own sqlite file, our Redis, quiet logs."""
        database = self.out / f"{prefix}.db"
        return {
            "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
            "CACHE_URL": self.redis.url,
            "REDIS_URL": self.redis.url,
            "CACHE_PREFIX": prefix,
            "LOG_LEVEL": "WARNING",
            "CACHE_DEFAULT_TTL": "3600",
            "RESPONSE_CACHE_TTL": "3600",
            "TASK_VISIBILITY_TIMEOUT": str(self.sizes.visibility_timeout),
            "RATE_LIMIT_ENABLED": "false",  # the existing rows measure without limits
            "TASK_DEMO_TASKS": "true",  # the task rows enqueue sleep and flaky
            "TASK_MAX_IN_FLIGHT_PER_CLIENT": "1000000",  # one client enqueues every task
            "ADMIN_TOKEN": ADMIN_TOKEN,  # the operator routes (dead letters) need it
            "METRICS_TOKEN": METRICS_TOKEN,
            "PYTHONPATH": f"{self.project(backend)}{os.pathsep}{SCRIPTS}",
            **extra,
        }

    def migrate(self, backend: str, env: dict[str, str]) -> None:
        """Create the service's tables in its database."""
        subprocess.run(
            [self.python(backend), "-m", "alembic", "upgrade", "head"],
            cwd=self.project(backend),
            env={**os.environ, **env},
            check=True,
            timeout=120,
            capture_output=True,
        )

    def serve(self, name: str, python: str, target: str, backend: str, env: dict[str, str]) -> str:
        """Start one uvicorn worker for `target` (module:app); return its base URL."""
        return self.serve_many([(name, python, target, backend, env)])[0]

    def serve_many(self, specs: Sequence[tuple[str, str, str, str, dict[str, str]]]) -> list[str]:
        """Start a uvicorn worker per (name, python, target, backend, env), all at once so that
        they import in parallel; return their base URLs once each one listens."""
        started = []
        for (name, python, target, backend, env), port in zip(specs, free_ports(len(specs)), strict=True):
            argv = [python, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)]
            argv += ["--workers", "1", "--no-access-log", "--log-level", "warning"]
            started.append((name, port, self.procs.spawn(name, argv, cwd=self.project(backend), env=env)))
        for name, port, process in started:
            try:
                wait_for_port(port, timeout=120, process=process)
            except (RuntimeError, TimeoutError) as error:
                log = (self.procs.log_dir / f"{name}.log").read_text(errors="replace")
                raise RuntimeError(f"{error}; the end of its log:\n{log[-3000:]}") from error
            self.servers[name] = process
        return [f"http://127.0.0.1:{port}" for _, port, _ in started]

    @property
    def plot_dir(self) -> Path:
        """bench/plots for a full run; bench/out/plots for --quick or --only (committed plots stay)."""
        return BENCH / "plots" if self.publish else BENCH / "out" / "plots"

    def named(self, name: str) -> "subprocess.Popen[bytes]":
        """A server started by `serve` under `name`."""
        return self.servers[name]

    def run_script(
        self, python: str, script: str, backend: str, env: dict[str, str], *args: str, timeout: float = 600
    ) -> str:
        """Run one of bench/scripts in a rendered service's directory; return its stdout."""
        done = subprocess.run(
            [python, str(SCRIPTS / script), *args],
            cwd=self.project(backend),
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{script} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return done.stdout

    def chart_rows(self, name: str, title: str, rows: list[Row], unit: str) -> None:
        """Draw a bar chart of these rows into bench/plots/<name>.png."""
        from harness.report import bar_chart

        path = self.plot_dir / f"{name}.png"
        bar_chart(path, title, rows, unit)
        self.plots[title] = path
