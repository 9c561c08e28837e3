"""The API does what its OpenAPI document says, for any input: schemathesis, all checks.

The app runs under uvicorn on a free port, over the project's database and a real Redis
(cache included), as in production. Every operation goes through the examples, coverage
and fuzzing phases, then the stateful phase chains operations through the links inferred
from the document (create an item, then read, change and delete it). Example counts are
kept small so the whole file runs in well under a minute.
"""

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.config import SchemathesisConfig
from schemathesis.openapi import from_url

from app.config import Settings
from app.main import create_app
from tests.servers import free_port

MAX_EXAMPLES = 25
STATEFUL_STEPS = 20
CONFIG = {
    "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
    "checks": {"enabled": True},
    # Sequences use valid data: invalid input is the other phases' job, and mixing it into
    # the sequences makes Hypothesis report its own replays as flaky (schemathesis#4132).
    "phases": {"stateful": {"max-steps": STATEFUL_STEPS, "generation": {"mode": "positive"}}},
    "request-timeout": 30.0,
}


@pytest.fixture
def live_server(settings: Settings, redis_url: str) -> Iterator[str]:
    """The app under uvicorn in a thread of its own, with its lifespan, over a real Redis."""
    app = create_app(settings.model_copy(update={"cache_url": redis_url}))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start within 30 s"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


# Built from the document alone (no lifespan, no server): collection needs the operations.
schema = schemathesis.openapi.from_dict(
    create_app(Settings()).openapi(), config=SchemathesisConfig.from_dict(CONFIG)
)


@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_every_operation_keeps_its_contract(case: Case[Any], live_server: str) -> None:
    case.call_and_validate(base_url=live_server)


def test_sequences_of_operations_keep_their_contract(live_server: str) -> None:
    served = from_url(f"{live_server}/openapi.json", config=SchemathesisConfig.from_dict(CONFIG))

    served.as_state_machine().run(
        settings=settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            suppress_health_check=list(HealthCheck),
            deadline=None,
        )
    )
