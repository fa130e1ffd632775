"""Operators' lamp commands override the schedule: no lamp_out / day_burn / circuit_outage for a
lamp that does what it was told, and normal judging once the override ends."""

from __future__ import annotations

from typing import Any

from processors.config import RulesConfig
from processors.engine import Engine
from processors.rules.overrides import LampOverrides, command_level
from processors.rules.streetlight.circuit_outage import CircuitOutage
from processors.rules.streetlight.day_burn import DayBurn
from processors.rules.streetlight.lamp_out import LampOut
from tests.unit.test_rules_streetlight import (
    MIN,
    NIGHT,
    NOON,
    NS,
    feed,
    lamp,
    raised,
    schedule,
)

DAY_NS = 86_400 * NS


def command(
    kind: str, params: dict[str, Any], target_type: str, target: str, at_ns: int
) -> dict[str, Any]:
    return {
        "id": "c1",
        "kind": kind,
        "params": params,
        "target_type": target_type,
        "target": target,
        "district": "central",
        "created_at": at_ns / NS,
        "expires_at": at_ns / NS + 600,
    }


def with_overrides(rule: Any, *cmds: dict[str, Any]) -> LampOverrides:
    ov = LampOverrides()
    for c in cmds:
        assert ov.apply(c)
    rule.use_overrides(ov)
    return ov


def dark_night(dev: str, start: int, n: int = 6, circuit: str | None = None) -> list[Any]:
    return [lamp(dev, start + i * 5 * MIN, 0.0, circuit) for i in range(n)]


def test_command_levels() -> None:
    assert command_level("switch", {"state": "off"}) == 0.0
    assert command_level("switch", {"state": "on"}) == -1.0
    assert command_level("dim", {"level_pct": 40}) == 40.0
    assert command_level("dim", {"level_pct": 0}) == 0.0
    assert command_level("dim", {"level_pct": 140}) is None
    assert command_level("reboot", {}) is None
    assert command_level("schedule", {"on": "sunset", "off": "sunrise"}) is None


def test_malformed_commands_are_ignored() -> None:
    ov = LampOverrides()
    assert not ov.apply({"kind": "switch"})
    assert not ov.apply(command("switch", {"state": "off"}, "galaxy", "x", NIGHT))
    assert not ov.apply(
        {**command("switch", {"state": "off"}, "device", "l1", NIGHT), "created_at": "soon"}
    )
    assert len(ov) == 0


def test_lamp_switched_off_at_night_is_not_out() -> None:
    # Without the command the same readings raise lamp_out: the test can fail.
    assert raised(feed(LampOut(schedule()), dark_night("l1", NIGHT))) == ["l1"]
    rule = LampOut(schedule())
    with_overrides(rule, command("switch", {"state": "off"}, "device", "l1", NIGHT - MIN))
    assert raised(feed(rule, dark_night("l1", NIGHT))) == []


def test_dim_to_zero_by_district_covers_every_lamp_there() -> None:
    rule = LampOut(schedule())
    with_overrides(rule, command("dim", {"level_pct": 0}, "district", "central", NIGHT - MIN))
    recs = dark_night("l1", NIGHT) + dark_night("l2", NIGHT)
    assert raised(feed(rule, sorted(recs, key=lambda r: r["ts"]))) == []


def test_other_lamps_are_still_judged() -> None:
    rule = LampOut(schedule())
    with_overrides(rule, command("switch", {"state": "off"}, "device", "l1", NIGHT - MIN))
    assert raised(feed(rule, dark_night("l2", NIGHT))) == ["l2"]


def test_override_with_duration_ends() -> None:
    rule = LampOut(schedule())
    with_overrides(
        rule, command("switch", {"state": "off", "duration_s": 600}, "device", "l1", NIGHT)
    )
    # 0..25 min after: the first two readings are covered, the rest are judged again.
    assert raised(feed(rule, dark_night("l1", NIGHT, n=8))) == ["l1"]


def test_override_without_duration_holds_until_next_scheduled_switch() -> None:
    rule = DayBurn(schedule())
    # Switched on at noon: lit by day is what the operator asked for ...
    with_overrides(rule, command("switch", {"state": "on"}, "device", "l1", NOON - MIN))
    lit_noon = [lamp("l1", NOON + i * 5 * MIN, 120.0) for i in range(6)]
    assert raised(feed(rule, lit_noon)) == []
    # ... until the schedule's next switch (that evening's sunset); the next day it burns.
    lit_next_day = [lamp("l1", NOON + DAY_NS + i * 5 * MIN, 120.0) for i in range(6)]
    assert raised(feed(rule, lit_next_day)) == ["l1"]


def test_switch_on_by_day_that_stays_dark_is_out() -> None:
    # The operator wants light; a lamp still dark after the command is a real fault.
    rule = LampOut(schedule())
    with_overrides(rule, command("switch", {"state": "on"}, "device", "l1", NOON))
    dark_noon = [lamp("l1", NOON + MIN + i * 5 * MIN, 0.0) for i in range(6)]
    assert raised(feed(rule, dark_noon)) == ["l1"]


def test_latest_command_wins_and_replays_do_not_undo_it() -> None:
    ov = LampOverrides()
    off = command("switch", {"state": "off"}, "device", "l1", NIGHT - 10 * MIN)
    on = command("switch", {"state": "on", "duration_s": 3600}, "circuit", "c1", NIGHT - 5 * MIN)
    assert ov.apply(off) and ov.apply(on)
    rec = lamp("l1", NIGHT, 0.0, "c1")
    assert ov.level(rec, NIGHT, lambda t: 100.0) == -1.0
    older = command("switch", {"state": "on"}, "device", "l1", NIGHT - 20 * MIN)
    assert not ov.apply(older)  # a replay of an older command for the same target


def test_circuit_switched_off_is_no_outage() -> None:
    lamps = {"c1": [f"l{i}" for i in range(6)]}
    plain = CircuitOutage(schedule(), circuits=lamps)
    recs = [lamp(f"l{i}", NIGHT + k * 5 * MIN, 0.0, "c1") for k in range(3) for i in range(6)]
    assert raised(feed(plain, recs), "circuit_outage") == ["c1"]
    rule = CircuitOutage(schedule(), circuits=lamps)
    with_overrides(rule, command("switch", {"state": "off"}, "circuit", "c1", NIGHT - MIN))
    assert raised(feed(rule, recs)) == []


def test_engine_hands_commands_to_its_lamp_rules_and_prunes_them() -> None:
    eng = Engine(RulesConfig())
    assert eng.command(command("switch", {"state": "off"}, "device", "l1", NIGHT))
    assert not eng.command(command("ping", {}, "device", "l1", NIGHT))
    lamp_rules = [r for r in eng.rules if r.name in ("lamp_out", "day_burn", "circuit_outage")]
    assert lamp_rules and all(getattr(r, "overrides", None) is eng.overrides for r in lamp_rules)
    recs = [lamp("l1", NIGHT + i * 5 * MIN, 0.0) for i in range(6)]
    plain = Engine(RulesConfig()).process([dict(r) for r in recs])
    assert "lamp_out" in [e.kind for e in plain.events if e.state == "raised"]
    out = eng.process(recs)
    assert [e.kind for e in out.events if e.state == "raised"] == []
    eng.tick(NIGHT + 3 * DAY_NS, out)
    assert len(eng.overrides) == 0
