"""Streetlight rules on hand-made series: schedule, grace, ordering, gaps, circuits, baselines."""

from __future__ import annotations

from datetime import UTC, date
from typing import Any

import pytest
from astral import Observer
from astral.sun import sunrise, sunset
from rulefeed import feed

from citywatch.citymodel import CityModel
from processors.alerts import AlertEvent, AlertManager, AlertPolicy
from processors.config import RulesConfig, StreetlightRulesConfig
from processors.engine import Engine
from processors.rules.base import Condition, Rule
from processors.rules.solar import NS, LocalClock, SolarSchedule
from processors.rules.streetlight.circuit_outage import CircuitOutage
from processors.rules.streetlight.day_burn import DayBurn
from processors.rules.streetlight.lamp_degradation import LampDegradation
from processors.rules.streetlight.lamp_out import LampOut
from processors.rules.streetlight.schedule import (
    DimmingProfile,
    LampSchedule,
    lamp_lit,
    schedule_for,
)
from processors.rules.streetlight.voltage_out_of_band import VoltageOutOfBand

LAT, LON = 31.23, 121.47
OBS = Observer(LAT, LON)
SUNSET = int(sunset(OBS, date(2024, 6, 1), tzinfo=UTC).timestamp()) * NS  # 18:53 local
SUNRISE = int(sunrise(OBS, date(2024, 6, 1), tzinfo=UTC).timestamp()) * NS  # 04:50 local
MIN = 60 * NS
NIGHT = SUNSET + 120 * MIN
NOON = SUNSET - 7 * 60 * MIN  # ~11:53 local


def schedule(**kw: Any) -> LampSchedule:
    return LampSchedule(SolarSchedule(LAT, LON, 1200), LocalClock("Asia/Shanghai"), **kw)


def lamp(
    dev: str, ts: int, power: float | None, circuit: str | None = None, **kw: Any
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "device_id": dev,
        "family": "streetlight",
        "district": "central",
        "ts": ts,
        **kw,
    }
    if power is not None:
        rec["power_w"] = power
        rec["current_a"] = power / 230.0
    if circuit is not None:
        rec["circuit_id"] = circuit
    return rec


def events(conds: list[Condition]) -> list[AlertEvent]:
    am = AlertManager(AlertPolicy(clear_after_s=600))
    return [e for c in conds for e in am.apply(c)]


def raised(conds: list[Condition], kind: str | None = None) -> list[str]:
    return [
        e.target for e in events(conds) if e.state == "raised" and (kind is None or e.kind == kind)
    ]


# --- what "lit" means ---------------------------------------------------------------------


def test_measured_power_beats_reported_state() -> None:
    assert lamp_lit({"power_state": "on", "power_w": 0.0}, 3.0, 0.02) is False
    assert lamp_lit({"power_state": "off", "power_w": 80.0}, 3.0, 0.02) is True
    assert lamp_lit({"current_a": 0.3}, 3.0, 0.02) is True
    assert lamp_lit({"power_state": "dim"}, 3.0, 0.02) is True
    assert lamp_lit({"voltage_v": 230.0}, 3.0, 0.02) is None


# --- lamp_out -----------------------------------------------------------------------------


def test_lamp_out_after_two_dark_readings_at_night_and_clears() -> None:
    rule = LampOut(schedule())
    one = feed(rule, [lamp("l1", NIGHT, 0.0)])
    assert one == []
    conds = feed(rule, [lamp("l1", NIGHT + 5 * MIN, 0.0)])
    assert [(c.kind, c.target, c.active) for c in conds] == [("lamp_out", "l1", True)]
    back = feed(rule, [lamp("l1", NIGHT + 10 * MIN, 80.0)])
    assert [(c.kind, c.active) for c in back] == [("lamp_out", False)]


def test_lamp_reporting_on_but_drawing_nothing_is_out() -> None:
    rule = LampOut(schedule())
    recs = [lamp("l1", NIGHT + k * 5 * MIN, 0.0, power_state="on") for k in range(2)]
    assert raised(feed(rule, recs)) == ["l1"]


def test_lit_lamp_at_night_and_dark_lamp_by_day_raise_nothing() -> None:
    rule = LampOut(schedule())
    recs = [lamp("l1", NIGHT + k * 5 * MIN, 80.0) for k in range(6)]
    recs += [lamp("l2", NOON + k * 5 * MIN, 0.0) for k in range(6)]
    assert feed(rule, recs) == []


def test_dusk_grace_then_out() -> None:
    rule = LampOut(schedule())
    # Late to switch on within the 20 min grace: not judged.
    grace = [lamp("l1", SUNSET + k * MIN, 0.0) for k in (5, 10, 15, 19)]
    assert feed(rule, grace) == []
    # Still dark after the grace: out after two readings spanning >= 240 s.
    conds = feed(rule, [lamp("l1", SUNSET + 21 * MIN, 0.0), lamp("l1", SUNSET + 26 * MIN, 0.0)])
    assert [c.active for c in conds] == [True]
    assert conds[0].ts == SUNSET + 26 * MIN


def test_dawn_grace() -> None:
    rule = LampOut(schedule())
    early_off = [lamp("l1", SUNRISE - k * MIN, 0.0) for k in (19, 15, 10, 5)]
    assert feed(rule, early_off) == []
    day = DayBurn(schedule())
    late_off = [lamp("l1", SUNRISE + k * MIN, 80.0) for k in (5, 10, 15, 19)]
    assert feed(day, late_off) == []
    assert raised(feed(day, [lamp("l1", SUNRISE + k * MIN, 80.0) for k in (21, 26)])) == ["l1"]


def test_duplicate_readings_do_not_count_twice() -> None:
    rule = LampOut(schedule())
    r = lamp("l1", NIGHT, 0.0)
    assert feed(rule, [r, dict(r), dict(r)]) == []


def test_out_of_order_reading_is_ignored() -> None:
    rule = LampOut(schedule())
    recs = [
        lamp("l1", NIGHT, 0.0),
        lamp("l1", NIGHT + 10 * MIN, 80.0),
        lamp("l1", NIGHT + 5 * MIN, 0.0),
    ]  # late: older than the lit one
    assert feed(rule, recs) == []


def test_gap_longer_than_max_restarts_the_count() -> None:
    rule = LampOut(schedule())
    recs = [lamp("l1", NIGHT, 0.0), lamp("l1", NIGHT + 90 * MIN, 0.0)]  # 1.5 h apart
    assert feed(rule, recs) == []
    assert raised(feed(rule, [lamp("l1", NIGHT + 95 * MIN, 0.0)])) == ["l1"]


def test_switch_event_then_report_needs_one_interval() -> None:
    rule = LampOut(schedule(), interval_s=300)
    recs = [lamp("l1", NIGHT, 0.0), lamp("l1", NIGHT + 20 * NS, 0.0)]
    assert feed(rule, recs) == []
    assert raised(feed(rule, [lamp("l1", NIGHT + 5 * MIN, 0.0)])) == ["l1"]


# --- day_burn -----------------------------------------------------------------------------


def test_day_burn_with_suggested_command_and_clear() -> None:
    rule = DayBurn(schedule())
    conds = feed(rule, [lamp("l7", NOON + k * 5 * MIN, 80.0) for k in range(2)])
    assert [(c.kind, c.active) for c in conds] == [("day_burn", True)]
    assert conds[0].suggested_command == "switch off lamp l7"
    off = feed(rule, [lamp("l7", NOON + 10 * MIN, 0.0)])
    assert [(c.active, c.suggested_command) for c in off] == [(False, None)]


def test_day_burn_not_raised_at_night() -> None:
    rule = DayBurn(schedule())
    assert feed(rule, [lamp("l7", NIGHT + k * 5 * MIN, 80.0) for k in range(5)]) == []


# --- dimming profiles ---------------------------------------------------------------------


def test_part_night_profile() -> None:
    # Switched off 01:00-05:00 local (17:00-21:00 UTC; sunrise is ~20:50 UTC).
    prof = DimmingProfile([("01:00", "05:00", 0.0)], grace_min=5)
    sch = schedule(default_profile=prof)
    t = SUNSET + (6 * 60 + 30) * MIN  # ~01:23 local
    assert sch.expected("l1", t) == 0.0
    assert feed(LampOut(sch), [lamp("l1", t + k * 5 * MIN, 0.0) for k in range(4)]) == []
    assert raised(feed(DayBurn(sch), [lamp("l1", t + k * 5 * MIN, 80.0) for k in range(4)])) == [
        "l1"
    ]


def test_dimmed_level_and_uncertain_minutes() -> None:
    prof = DimmingProfile([("00:00", "05:00", 50.0)], grace_min=5)
    sch = schedule(plans={"l1": (SolarSchedule(LAT, LON, 1200), prof)})
    midnight_local = SUNSET + (5 * 60 + 7) * MIN  # 00:00 local
    assert sch.expected("l1", midnight_local + 30 * MIN) == 50.0
    assert sch.expected("l1", midnight_local - 2 * MIN) == -1.0  # lit, level uncertain
    assert sch.expected("l2", midnight_local + 30 * MIN) == 100.0  # no plan: full


def test_schedule_from_city_model_agrees_with_the_model() -> None:
    city = CityModel.generate(seed=1, scale=1)
    sch = schedule_for(RulesConfig(), city)
    lamps = [lid for c in list(city.circuits.values())[:5] for lid in c.lamp_ids[:2]]
    checked = 0
    for k in range(0, 2 * 86400, 397):
        ts = 1717200000 + k
        for lid in lamps:
            exp = city.lamp_expected(lid, ts)
            mine = sch.expected(lid, ts * NS)
            if exp.near_switch or mine is None:
                continue
            checked += 1
            assert (mine != 0.0) == exp.lit, (lid, ts)
            if mine > 0:
                assert mine == exp.dimming_pct
    assert checked > 1000


# --- circuit outage -----------------------------------------------------------------------

CIRCUIT = {"circ-1": [f"lamp-{i:02d}" for i in range(20)]}


def circuit_night(
    dark_from: int | None, lamps: list[str], minutes: int, dark: set[str] | None = None
) -> list[dict[str, Any]]:
    """Readings every 5 min, staggered by lamp; lamps in ``dark`` (default all) go dark."""
    recs = []
    for k in range(0, minutes, 5):
        for i, lid in enumerate(lamps):
            ts = NIGHT + k * MIN + i * 13 * NS
            off = dark_from is not None and ts >= dark_from and (dark is None or lid in dark)
            recs.append(lamp(lid, ts, 0.0 if off else 80.0, "circ-1", cabinet_id="cab-1"))
    return recs


def test_circuit_outage_raises_one_alert_and_no_lamp_alerts() -> None:
    sch = schedule()
    rules: list[Rule] = [CircuitOutage(sch, circuits=CIRCUIT), LampOut(sch, circuits=CIRCUIT)]
    conds: list[Condition] = []
    for r in circuit_night(NIGHT + 30 * MIN, CIRCUIT["circ-1"], 180):
        for rule in rules:
            rule.on_reading(r, conds)
    evs = events(conds)
    up = [e for e in evs if e.state == "raised"]
    assert [(e.kind, e.target, e.target_type) for e in up] == [
        ("circuit_outage", "circ-1", "circuit")
    ]
    assert up[0].suggested_command is not None and "circ-1" in up[0].suggested_command
    assert "cab-1" in up[0].suggested_command
    assert not [c for c in conds if c.kind == "lamp_out" and c.active]
    # Raised within one reporting interval of the cut.
    assert NIGHT + 30 * MIN <= up[0].episode_start <= NIGHT + 35 * MIN


def test_circuit_outage_without_city_model_learns_membership() -> None:
    sch = schedule()
    rule = CircuitOutage(sch)
    conds = feed(rule, circuit_night(NIGHT + 30 * MIN, CIRCUIT["circ-1"], 90))
    assert raised(conds) == ["circ-1"]


def test_circuit_clears_when_power_returns() -> None:
    sch = schedule()
    rule = CircuitOutage(sch, circuits=CIRCUIT)
    recs = circuit_night(NIGHT + 30 * MIN, CIRCUIT["circ-1"], 60)
    recs += [
        lamp(lid, NIGHT + 60 * MIN + k * 5 * MIN, 80.0, "circ-1")
        for k in range(6)
        for lid in CIRCUIT["circ-1"]
    ]
    states = [(e.kind, e.state) for e in events(feed(rule, recs))]
    assert states == [("circuit_outage", "raised"), ("circuit_outage", "cleared")]


def test_one_lamp_out_is_a_lamp_out_not_a_circuit_outage() -> None:
    sch = schedule()
    rules: list[Rule] = [CircuitOutage(sch, circuits=CIRCUIT), LampOut(sch, circuits=CIRCUIT)]
    conds: list[Condition] = []
    for r in circuit_night(NIGHT + 30 * MIN, CIRCUIT["circ-1"], 90, dark={"lamp-03"}):
        for rule in rules:
            rule.on_reading(r, conds)
    assert [(e.kind, e.target) for e in events(conds) if e.state == "raised"] == [
        ("lamp_out", "lamp-03")
    ]


def test_lamp_already_out_is_handed_over_to_the_circuit() -> None:
    sch = schedule()
    lo = LampOut(sch, circuits=CIRCUIT)
    recs = circuit_night(NIGHT, CIRCUIT["circ-1"], 30, dark={"lamp-03"})
    first = feed(lo, recs)
    assert [c.active for c in first if c.target == "lamp-03"][:1] == [True]
    later = [
        lamp(lid, NIGHT + 30 * MIN + k * 5 * MIN + i * 13 * NS, 0.0, "circ-1")
        for k in range(3)
        for i, lid in enumerate(CIRCUIT["circ-1"])
    ]
    conds = feed(lo, later)
    off = [i for i, c in enumerate(conds) if c.target == "lamp-03" and not c.active]
    assert off and "circuit_outage" in conds[off[0]].message
    # Before the circuit opened lamp-03 was still repeated; after the handover nothing is.
    assert not [c for c in conds[off[0] :] if c.active]
    assert not [c for c in conds if c.active and c.target != "lamp-03"]


def test_half_dark_circuit_holds_lamp_out_back_then_lets_it_through() -> None:
    sch = schedule()
    lo = LampOut(sch, circuits=CIRCUIT)
    half = set(CIRCUIT["circ-1"][:12])  # 60 %: not an outage, but suspicious
    conds = feed(lo, circuit_night(NIGHT, CIRCUIT["circ-1"], 10, dark=half))
    assert not [c for c in conds if c.active]
    conds = feed(lo, circuit_night(NIGHT, CIRCUIT["circ-1"], 40, dark=half)[40:])
    assert sorted({c.target for c in conds if c.active}) == sorted(half)


def test_engine_with_city_model_cable_theft() -> None:
    city = CityModel.generate(seed=1, scale=1)
    circ = max(city.circuits.values(), key=lambda c: len(c.lamp_ids))
    eng = Engine(RulesConfig(), city)
    recs = []
    for k in range(0, 120, 5):
        for i, lid in enumerate(circ.lamp_ids):
            ts = NIGHT + k * MIN + i * 7 * NS
            p = 0.0 if k >= 30 else 60.0
            recs.append(
                {
                    "device_id": lid,
                    "family": "streetlight",
                    "district": circ.district,
                    "ts": ts,
                    "received_at": ts,
                    "late": False,
                    "power_w": p,
                    "current_a": p / 230,
                    "voltage_v": 230.0,
                    "circuit_id": circ.id,
                    "power_state": "on" if p else "off",
                    "dimming_pct": 100.0,
                }
            )
    out = eng.process(recs)
    up = [(e.kind, e.target) for e in out.events if e.state == "raised"]
    assert up == [("circuit_outage", circ.id)]


# --- lamp_degradation ---------------------------------------------------------------------


def degr(
    rule: LampDegradation, start: int, powers: list[float], level: float = 100.0
) -> list[Condition]:
    return feed(
        rule,
        [
            lamp("l1", start + k * 5 * MIN, p, dimming_pct=level, voltage_v=230.0)
            for k, p in enumerate(powers)
        ],
    )


def test_degradation_after_baseline_and_three_readings() -> None:
    rule = LampDegradation(schedule())
    assert degr(rule, NIGHT, [100.0, 101.0, 99.0] * 4) == []  # learning
    two = degr(rule, NIGHT + 60 * MIN, [75.0, 75.0])
    assert two == []
    three = degr(rule, NIGHT + 70 * MIN, [75.0])
    assert [(c.kind, c.active) for c in three] == [("lamp_degradation", True)]
    assert three[0].value == pytest.approx(-0.25, abs=0.01)
    back = degr(rule, NIGHT + 75 * MIN, [100.0] * 3)
    assert [c.active for c in back] == [False]


def test_degradation_upwards_too() -> None:
    rule = LampDegradation(schedule())
    degr(rule, NIGHT, [60.0] * 12)
    assert raised(degr(rule, NIGHT + 60 * MIN, [75.0] * 3)) == ["l1"]


def test_each_dimming_level_has_its_own_baseline() -> None:
    rule = LampDegradation(schedule())
    degr(rule, NIGHT, [100.0] * 12)
    # Half power at 50 %: that level is still learning, and it is normal anyway.
    assert degr(rule, NIGHT + 60 * MIN, [50.0] * 20, level=50.0) == []
    # Back at full level, a 19 % drop is not yet a fault.
    assert degr(rule, NIGHT + 200 * MIN, [81.0] * 5) == []


def test_a_level_still_learning_borrows_a_scaled_baseline() -> None:
    rule = LampDegradation(schedule())
    degr(rule, NIGHT, [100.0] * 12)
    # Dimmed to 50 % and degraded at once: judged against 100 W x 50 / 100 = 50 W.
    conds = degr(rule, NIGHT + 60 * MIN, [35.0] * 20, level=50.0)
    assert [c.active for c in conds][:1] == [True]
    assert conds[0].ts == NIGHT + 70 * MIN  # the third reading
    # The degraded readings were not learnt as the 50 % baseline: still off after 20.
    assert all(c.active for c in conds)
    assert rule.baselines["l1"][50].samples == []


def test_slow_drift_does_not_drag_the_baseline_along() -> None:
    rule = LampDegradation(schedule())
    degr(rule, NIGHT, [100.0] * 12)
    # 0.2 % per reading: each within 5 % of the baseline, so learning continues - up to
    # the clamp; the fault must still surface once the lamp is 25 % down.
    drift = [100.0 * (1 - 0.002 * k) for k in range(1, 131)]
    conds = degr(rule, NIGHT + 60 * MIN, drift)
    active = [c for c in conds if c.active]
    assert active, "a baseline that follows the drift never sees the fault"
    first = active[0]
    assert first.value is not None and first.value <= -0.2
    k = (first.ts - (NIGHT + 60 * MIN)) // (5 * MIN)
    # Learning stops once the lag passes 5 % (baseline ~98 W, and never below 95 W), so
    # the alert comes when the lamp is ~20-25 % below where it started.
    assert 100 <= k <= 126 and 75.0 <= drift[k] <= 80.0


def test_degradation_ignores_dark_lamps_and_bad_supply() -> None:
    rule = LampDegradation(schedule())
    degr(rule, NIGHT, [100.0] * 12)
    recs = [
        lamp("l1", NIGHT + (60 + 5 * k) * MIN, 70.0, dimming_pct=100.0, voltage_v=190.0)
        for k in range(5)
    ]
    recs += [lamp("l1", NIGHT + (90 + 5 * k) * MIN, 0.0, dimming_pct=100.0) for k in range(5)]
    assert feed(rule, recs) == []


# --- voltage ------------------------------------------------------------------------------


def test_voltage_out_of_band() -> None:
    rule = VoltageOutOfBand()
    v = [
        lamp("l1", NIGHT + k * 5 * MIN, None, voltage_v=x)
        for k, x in enumerate([230.0, 250.0, 231.0, 250.0, 196.0, 230.0, 230.0])
    ]
    conds = feed(rule, v)
    assert [(c.active, c.ts) for c in conds] == [
        (True, NIGHT + 20 * MIN),
        (False, NIGHT + 30 * MIN),
    ]


def test_dead_feeder_is_not_a_band_violation() -> None:
    rule = VoltageOutOfBand()
    v = [lamp("l1", NIGHT + k * 5 * MIN, None, voltage_v=0.0) for k in range(5)]
    assert feed(rule, v) == []


def test_config_thresholds_are_used() -> None:
    cfg = StreetlightRulesConfig(voltage_band_v=(210.0, 250.0), voltage_readings=3)
    rule = VoltageOutOfBand(cfg)
    v = [lamp("l1", NIGHT + k * 5 * MIN, None, voltage_v=245.0) for k in range(3)]
    assert feed(rule, v) == []
    v = [lamp("l1", NIGHT + (20 + k * 5) * MIN, None, voltage_v=205.0) for k in range(3)]
    assert [c.active for c in feed(rule, v)] == [True]
