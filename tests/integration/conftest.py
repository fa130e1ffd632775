"""Session fixtures: the real local stack (reused when healthy), isolated settings per test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from citywatch import stack
from citywatch.settings import Settings
from citywatch.stack.topics import ensure_topics

from .helpers import Proc, run_id, stop_all


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    s = Settings()
    if not all(healthy for _, healthy in stack.status(s).values()):
        stack.up(s)
    else:
        # A stack started by an older checkout may lack a topic added since.
        asyncio.run(ensure_topics(s))
    return s


@pytest.fixture
def rid() -> str:
    return run_id()


@pytest.fixture
def spawn(tmp_path: Path, stack_settings: Settings, rid: str) -> Iterator[object]:
    """spawn(*args, env=...) starts ``citywatch <args>``; everything is stopped at the end.

    Each test gets its own MQTT share group, consumer group and spool directory, so a demo
    left running beside the tests cannot take their messages.
    """
    procs: list[Proc] = []
    base_env = {
        "CITYWATCH_GATEWAY__SHARE_GROUP": f"t{rid}",
        "CITYWATCH_GATEWAY__METRICS_PORT": "0",
        # Long enough to survive the restarts under test, short enough that test sessions
        # do not keep queueing messages in Mosquitto after the run.
        "CITYWATCH_GATEWAY__SESSION_EXPIRY_S": "180",
        "CITYWATCH_PROCESSOR__GROUP_ID": f"citywatch-test-{rid}",
        "CITYWATCH_PROCESSOR__METRICS_PORT": "0",
        "CITYWATCH_STATE_DIR": str(stack_settings.state_dir),
    }

    def _spawn(*args: str, env: dict[str, str] | None = None, name: str = "proc") -> Proc:
        p = Proc(list(args), {**base_env, **(env or {})}, tmp_path / f"{name}-{len(procs)}.log")
        procs.append(p.start())
        return p

    yield _spawn
    stop_all(stack_settings, procs)
