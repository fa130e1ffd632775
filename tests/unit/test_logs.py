"""citywatch.logs.setup: what the long-running commands log, and what they must not."""

from __future__ import annotations

import logging

import pytest
from typer.testing import CliRunner

from citywatch import logs


def test_request_urls_which_may_carry_influxdb_passwords_stay_out_of_the_log() -> None:
    logs.setup("INFO")
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)


def test_the_monitor_command_sets_up_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a handler its warnings (InfluxDB down) and roll-up rounds reached nobody."""
    from citywatch.cli import app
    from citywatch.monitor import Monitor

    levels: list[str] = []
    ran: list[bool] = []

    async def run(self: Monitor, stop: object = None) -> None:
        ran.append(True)

    monkeypatch.setattr(logs, "setup", levels.append)
    monkeypatch.setattr(Monitor, "run", run)
    result = CliRunner().invoke(app, ["dashboards", "monitor", "--log-level", "DEBUG"])
    assert result.exit_code == 0, result.output
    assert levels == ["DEBUG"]
    assert ran == [True]
