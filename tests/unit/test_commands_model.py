"""Command model: params per kind, the state machine, effect checks, suggestion parsing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from commands.model import (
    CommandError,
    CommandRequest,
    aggregate,
    can_move,
    effect_seen,
    validate_params,
)
from commands.service import parse_suggestion


def test_params_are_validated_per_kind() -> None:
    assert validate_params("switch", {"state": "off"}) == {"state": "off"}
    assert validate_params("dim", {"level_pct": 0}) == {"level_pct": 0}
    assert validate_params("schedule", {"on": "sunset+15", "off": "06:30"}) == {
        "on": "sunset+15",
        "off": "06:30",
    }
    with pytest.raises(CommandError, match="level_pct"):
        validate_params("dim", {"level_pct": 140})
    with pytest.raises(CommandError, match="state"):
        validate_params("switch", {"state": "maybe"})
    with pytest.raises(CommandError, match="Extra inputs"):
        validate_params("ping", {"x": 1})
    with pytest.raises(CommandError, match="go together"):
        validate_params("schedule", {"on": "sunset", "off": "sunrise", "dim_level_pct": 40})
    with pytest.raises(CommandError, match="HH:MM"):
        validate_params("schedule", {"on": "25:00", "off": "sunrise"})
    with pytest.raises(CommandError, match="unknown command kind"):
        validate_params("explode", {})


def test_request_rejects_bad_params_as_validation_error() -> None:
    with pytest.raises(ValidationError, match="bad params for dim"):
        CommandRequest(kind="dim", target_type="device", target="l1", params={})
    with pytest.raises(ValidationError):
        CommandRequest.model_validate({"kind": "switch", "target_type": "street", "target": "x"})


def test_state_machine() -> None:
    assert can_move("queued", "sent") and can_move("sent", "sent") and can_move("sent", "acked")
    assert can_move("acked", "applied") and can_move("queued", "expired")
    assert not can_move("queued", "applied")  # never applied without being sent
    assert not can_move("sent", "applied")  # nor without the device's ack
    assert not can_move("applied", "failed") and not can_move("expired", "sent")


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], "queued"),
        (["queued", "acked"], "queued"),
        (["acked", "sent", "applied"], "sent"),
        (["applied", "applied"], "applied"),
        (["expired", "expired"], "expired"),
        (["applied", "expired"], "failed"),
        (["applied", "acked"], "acked"),
    ],
)
def test_aggregate(states: list[str], expected: str) -> None:
    assert aggregate(states) == expected


def test_effect_seen() -> None:
    on = {"state": "on"}
    assert effect_seen("switch", on, {"power_state": "on"}) is True
    assert effect_seen("switch", on, {"power_state": "off"}) is False
    assert effect_seen("switch", {"state": "off"}, {"power_state": "off"}) is True
    assert effect_seen("switch", on, {"fill_ratio": 0.3}) is None
    assert effect_seen("dim", {"level_pct": 40}, {"power_state": "dim", "dimming_pct": 40})
    assert effect_seen("dim", {"level_pct": 40}, {"power_state": "on", "dimming_pct": 100}) is False
    assert effect_seen("dim", {"level_pct": 0}, {"power_state": "off"}) is True
    assert effect_seen("reboot", {}, {"seq": 1}) is True
    assert effect_seen("ping", {}, {"power_state": "on"}) is None


def test_parse_suggestion() -> None:
    off = ("switch", "device", "lamp-1", {"state": "off"})
    assert parse_suggestion("switch off lamp lamp-1") == off
    on = ("switch", "circuit", "c-9", {"state": "on"})
    assert parse_suggestion("Switch ON circuit c-9") == on
    assert parse_suggestion("dim district north to 30%") == (
        "dim",
        "district",
        "north",
        {"level_pct": 30},
    )
    for bad in ("replace lamp lamp-1", "dim circuit c-1", "switch off"):
        with pytest.raises(CommandError):
            parse_suggestion(bad)
