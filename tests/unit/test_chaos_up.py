"""A private stack that fails to start leaves nothing running, and a lost port is retried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from citywatch.chaos import harness
from citywatch.settings import Settings
from citywatch.stack.process import StackError

IN_USE = "InfluxDB exited during start-up.\nbind: address already in use"


class FakeStack:
    """Stands in for ``stack.up``: fails with the given errors, then starts."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        self.started: list[Settings] = []

    def __call__(self, s: Settings, log: Any = None) -> None:
        self.started.append(s)
        if self.errors:
            raise StackError(self.errors.pop(0))


def make(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, errors: list[str]) -> tuple[Any, Any]:
    fake = FakeStack(errors)
    monkeypatch.setattr(harness, "stack_up", fake)
    c = harness.Chaos(Settings(), workdir=tmp_path, log=lambda m: None)
    downs: list[Path] = []
    monkeypatch.setattr(c, "down", lambda: downs.append(c.s.state_dir))
    return c, (fake, downs)


def ports(s: Settings) -> set[int]:
    return {s.mqtt.port, s.kafka.controller_port, s.influx.port, s.influx.rpc_port}


def test_a_taken_port_is_retried_with_new_ports_and_a_new_state_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    c, (fake, downs) = make(monkeypatch, tmp_path, [IN_USE])
    first = c.s
    c.up()
    assert len(fake.started) == 2
    assert downs == [first.state_dir]  # what the failed attempt started was stopped
    assert c.s.state_dir != first.state_dir
    assert ports(c.s).isdisjoint(ports(first))
    assert c.env["CITYWATCH_INFLUX__PORT"] == str(c.s.influx.port)


def test_another_failure_stops_what_started_and_is_raised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    c, (fake, downs) = make(monkeypatch, tmp_path, ["Kafka did not become healthy"])
    with pytest.raises(StackError, match="healthy"):
        c.up()
    assert len(fake.started) == 1
    assert downs == [c.s.state_dir]


def test_ports_taken_every_time_give_up_after_the_attempts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    c, (fake, downs) = make(monkeypatch, tmp_path, [IN_USE] * 5)
    with pytest.raises(StackError, match="in use"):
        c.up(attempts=3)
    assert len(fake.started) == 3
    assert len(downs) == 3
