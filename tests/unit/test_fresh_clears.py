"""A restarted processor ends the alert episodes its previous run left open once their fault is
gone, even when the fault ended while no processor ran (before the warm-up replay's window):
the rules' new state says "not present" on evidence, and only on evidence.

Each test hands the alert manager an episode as ``processors.open_alerts`` would after a
restart, then feeds a new rule the readings that follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
import pytest
from rulefeed import feed
from test_rules_bin import T0, Q, b
from test_rules_streetlight import CIRCUIT, MIN, NIGHT, NOON, circuit_night, lamp, schedule
from test_rules_vehicle import PROJ, fix

from processors.alerts import AlertEvent, AlertManager, AlertPolicy, Episode
from processors.rules.base import Condition, Rule
from processors.rules.bin.bin_fast_fill import BinFastFill
from processors.rules.bin.bin_fire import BinFire
from processors.rules.bin.bin_knocked_over import BinKnockedOver
from processors.rules.bin.bin_overflow import BinOverflow
from processors.rules.bin.bin_overflow_unserved import BinOverflowUnserved
from processors.rules.common.device_silence import DeviceSilence
from processors.rules.common.out_of_range import OutOfRange
from processors.rules.dust.dust_exceedance import DustExceedance
from processors.rules.dust.night_noise import NightNoise
from processors.rules.dust.sensor_drift import SensorDrift
from processors.rules.dust.stuck_sensor import StuckSensor
from processors.rules.solar import LocalClock
from processors.rules.streak import NS, Streak, StreakParams
from processors.rules.streetlight.circuit_outage import CircuitOutage
from processors.rules.streetlight.lamp_degradation import LampDegradation
from processors.rules.streetlight.lamp_out import LampOut
from processors.rules.vehicle.idle_too_long import IdleTooLong
from processors.rules.vehicle.overspeed import Overspeed

R = TypeVar("R", bound=Rule)


def restart_run(
    rule: Rule,
    kind: str,
    target: str,
    start: int,
    recs: list[dict[str, Any]],
    quiet: Sequence[tuple[str, str, int]] = (),
) -> tuple[int | None, list[AlertEvent]]:
    """Events of an alert manager that adopted an open (kind, target) episode from ``start``
    (and took ``quiet``'s (kind, target, since) hints, ``AlertManager.quiet``), and how many
    readings the rule took to send its first clear of ``target`` (None: never)."""
    am = AlertManager(AlertPolicy(clear_after_s=600))
    am.adopt({(kind, target): Episode("old-id", start, "warning", start)})
    for quiet_kind, quiet_target, since in quiet:
        am.quiet((quiet_kind, quiet_target), since)
    out: list[Condition] = []
    first, events = None, []
    for k, r in enumerate(recs):
        rule.on_reading(r, out)
        if first is None and any(c.target == target and not c.active for c in out):
            first = k + 1
        events += [e for c in out for e in am.apply(c)]
        out.clear()
    return first, events


def after_restart(
    rule: Rule, kind: str, target: str, start: int, recs: list[dict[str, Any]]
) -> list[AlertEvent]:
    """The events of ``restart_run``."""
    return restart_run(rule, kind, target, start, recs)[1]


def cleared(events: list[AlertEvent]) -> list[str]:
    return [e.alert_id for e in events if e.state == "cleared"]


def test_a_new_streak_clears_only_when_its_rule_asks() -> None:
    on = StreakParams(need=2, clear_need=2, hold_ns=100, repeat_ns=40, fresh_clears=True)
    off = StreakParams(need=2, clear_need=2, hold_ns=100, repeat_ns=40)
    assert [Streak().step(1, False, off)] == [0]
    s = Streak()
    # Bad, then two good in a row: the clear; once the hold has passed, the last; then quiet
    # (a new streak leaves out the repeats in between: the manager needs none of them).
    got = [s.step(t, bad, on) for t, bad in [(1, True), (2, False), (3, False), (50, False)]]
    assert got == [0, 0, -1, 0]
    assert [s.step(t, False, on) for t in (103, 200)] == [-1, 0]
    # A streak that raised first is not new any more: its clears are the usual ones.
    s = Streak()
    assert [s.step(t, True, on) for t in (1, 2, 3)] == [0, 1, 0]
    assert not s.fresh


def test_a_silence_that_ended_while_no_processor_ran_clears_on_the_next_reading() -> None:
    rule = DeviceSilence({"bin": 900.0}, k=3.0)
    start = T0 + 3 * Q
    # The warm-up replay's readings from before the silence say nothing about it.
    assert cleared(after_restart(rule, "device_silence", "bin-1", start, [b(0)])) == []
    rule = DeviceSilence({"bin": 900.0}, k=3.0)
    assert cleared(after_restart(rule, "device_silence", "bin-1", start, [b(0), b(5)])) == [
        "old-id"
    ]
    rule = DeviceSilence({"bin": 900.0}, k=3.0)
    assert cleared(after_restart(rule, "device_silence", "bin-1", start, [b(5)])) == ["old-id"]


def _silence_after_restart(learnt: bool) -> list[Condition]:
    before = DeviceSilence({"bin": 900.0}, k=3.0)
    feed(before, [b(0)])
    rule = relearnt(DeviceSilence({"bin": 900.0}, k=3.0), "bin-1", before) if learnt else None
    rule = rule or DeviceSilence({"bin": 900.0}, k=3.0)
    out: list[Condition] = []
    rule.on_tick(T0 + 3 * Q + NS, out)  # the bin fell silent before the replay's window
    return out


def test_a_bin_silent_since_before_the_replay_is_raised_from_its_checkpoint() -> None:
    got = _silence_after_restart(learnt=True)
    # The time, hence the id, the uninterrupted rule gives it.
    assert [(c.active, c.ts, c.district) for c in got] == [(True, T0 + 3 * Q, "north")]
    assert _silence_after_restart(learnt=False) == []  # without: never seen, never silent
    silent = DeviceSilence({"bin": 900.0}, k=3.0)
    silent.relearn("bin-1", [T0, "bin", "north", True])  # raised before the checkpoint
    out: list[Condition] = []
    silent.on_tick(T0 + 9 * Q, out)
    assert out == []  # not raised twice; its next reading clears it
    silent.on_reading(b(10), out)
    assert [(c.active, c.ts) for c in out] == [(False, T0 + 10 * Q)]
    for damaged in ([T0, "bin", "north"], ["x", "bin", "north", False], [T0, 1, "n", False]):
        with pytest.raises((ValueError, TypeError)):
            DeviceSilence({"bin": 900.0}).relearn("bin-1", damaged)


def test_out_of_range_clears_after_the_hold() -> None:
    rule, am = OutOfRange({"temperature_c": (-40.0, 70.0)}), AlertManager(AlertPolicy(600))
    out: list[Condition] = []
    for k, t in enumerate([20.0, 95.0, 96.0, 21.0, 21.0]):
        rule.on_reading(b(k, temperature_c=t), out)
    states = [(e.state, e.ts) for c in out for e in am.apply(c)]
    # It used to send "back in range" once, and the manager waited for a second that never came.
    assert states == [("raised", T0 + Q), ("cleared", T0 + 4 * Q)]
    assert cleared(
        after_restart(
            OutOfRange({"temperature_c": (-40.0, 70.0)}),
            "out_of_range",
            "bin-1",
            T0,
            [b(k, temperature_c=20.0) for k in range(1, 3)],
        )
    ) == ["old-id"]
    # Readings without a ranged metric judge nothing.
    assert (
        cleared(
            after_restart(
                OutOfRange({"temperature_c": (-40.0, 70.0)}),
                "out_of_range",
                "bin-1",
                T0,
                [b(1), b(2)],
            )
        )
        == []
    )


@pytest.mark.parametrize(
    ("fills", "ends"),
    [
        ([0.85, 0.86, 0.87], False),  # between the clear and raise levels: cannot tell
        ([0.3, 0.3], True),
        ([0.85, 0.3, 0.3], True),
    ],
)
def test_an_overflow_ends_only_below_its_clear_level(fills: list[float], ends: bool) -> None:
    recs = [b(k + 1, fill_ratio=f) for k, f in enumerate(fills)]
    got = cleared(after_restart(BinOverflow(), "bin_overflow", "bin-1", T0, recs))
    assert got == (["old-id"] if ends else [])


def test_a_knocked_over_bin_half_upright_is_not_known_to_be_upright() -> None:
    half = [b(k, tilt_deg=40.0) for k in range(1, 4)]
    assert cleared(after_restart(BinKnockedOver(), "bin_knocked_over", "bin-1", T0, half)) == []
    up = half + [b(k, tilt_deg=5.0) for k in range(4, 6)]
    got = cleared(after_restart(BinKnockedOver(), "bin_knocked_over", "bin-1", T0, up))
    assert got == ["old-id"]


def test_an_unserved_bin_stays_unserved_until_emptied() -> None:
    # Overflowing for 13 h when the processor restarted: a new rule's clock says 1 h.
    over = [b(k, fill_ratio=0.95) for k in range(1, 5)]
    rule = BinOverflowUnserved()
    assert cleared(after_restart(rule, "bin_overflow_unserved", "bin-1", T0, over)) == []
    emptied = [*over, b(5, fill_ratio=0.05, emptied=True), b(6, fill_ratio=0.06)]
    rule = BinOverflowUnserved()
    got = cleared(after_restart(rule, "bin_overflow_unserved", "bin-1", T0, emptied))
    assert got == ["old-id"]


def test_a_rule_that_learns_a_baseline_leaves_the_episode_open() -> None:
    # bin_fire learns the bin's usual temperature first: a new rule cannot tell a warm bin
    # from one still smouldering, so the episode waits for the rule's own verdict.
    recs = [b(k, temperature_c=25.0) for k in range(1, 10)]
    assert cleared(after_restart(BinFire(), "bin_fire", "bin-1", T0, recs)) == []


def relearnt(rule: R, device: str, other: Rule) -> R:
    """``rule`` given what ``other`` learnt of ``device``, through JSON as in a checkpoint."""
    rule.relearn(device, orjson.loads(orjson.dumps(other.learnt(device))))
    return rule


@pytest.mark.parametrize(("temp", "ends"), [(22.0, True), (45.0, False)])
def test_a_checkpointed_bin_baseline_tells_a_cool_bin_from_a_smouldering_one(
    temp: float, ends: bool
) -> None:
    before = BinFire()
    feed(before, [b(k, temperature_c=18.0) for k in range(9)])  # an ambient of 18 C, learnt
    rule = relearnt(BinFire(), "bin-1", before)
    events = after_restart(
        rule, "bin_fire", "bin-1", T0, [b(k, temperature_c=temp) for k in (20, 21)]
    )
    assert cleared(events) == (["old-id"] if ends else [])
    assert rule.bins["bin-1"].streak.on is not ends  # 45 C is +27 C over the old baseline


def _lamp_night(watts: list[float], start: int = 0) -> list[dict[str, Any]]:
    return [lamp("l1", NIGHT + (start + k) * 5 * MIN, w) for k, w in enumerate(watts)]


def test_a_checkpointed_lamp_baseline_ends_a_degradation_repaired_while_no_processor_ran() -> None:
    before = LampDegradation(schedule())
    raised = feed(before, _lamp_night([100.0] * 12 + [70.0] * 3))
    assert [c.active for c in raised] == [True]
    repaired = _lamp_night([100.0] * 8, start=40)
    rule = relearnt(LampDegradation(schedule()), "l1", before)
    got = after_restart(rule, "lamp_degradation", "l1", raised[0].ts, repaired)
    assert cleared(got) == ["old-id"]


def test_a_baseline_learnt_afresh_does_not_end_a_degradation() -> None:
    # Still 30 % low, but a new rule without the checkpoint learns 70 W as the lamp's draw.
    still = _lamp_night([70.0] * 20, start=40)
    got = after_restart(LampDegradation(schedule()), "lamp_degradation", "l1", NIGHT, still)
    assert cleared(got) == []


def test_a_checkpointed_usual_fill_rate_is_judged_in_the_first_hour() -> None:
    before = BinFastFill()
    feed(before, [b(4 * h, fill_ratio=0.05 * h) for h in range(6)])  # 0.05 per hour, learnt
    hour = [b(40, fill_ratio=0.1), b(44, fill_ratio=0.5)]  # the next day: +0.4 in an hour
    fresh = feed(BinFastFill(), hour)
    assert not [c for c in fresh if c.active]  # without it: three hours to learn the rate
    rule = relearnt(BinFastFill(), "bin-1", before)
    assert [c.active for c in feed(rule, hour)] == [True]


@pytest.mark.parametrize(
    ("rule_type", "field", "bad", "between"),
    [(BinOverflow, "fill_ratio", 0.95, 0.85), (BinKnockedOver, "tilt_deg", 60.0, 40.0)],
)
def test_a_bin_on_before_a_restart_goes_on_between_the_levels(
    rule_type: type[BinOverflow | BinKnockedOver], field: str, bad: float, between: float
) -> None:
    before = rule_type()
    assert {c.active for c in feed(before, [b(k, **{field: bad}) for k in range(4)])} == {True}
    kind = before.kind
    # A replayed reading the checkpoint holds already (k=2), then four hours in the band.
    later = [b(2, **{field: 0.0}), *(b(k, **{field: between}) for k in range(4, 20))]
    events = after_restart(relearnt(rule_type(), "bin-1", before), kind, "bin-1", T0, later)
    # The adopted episode gets its repeats, so the manager escalates it after 4 h (warning).
    assert [(e.alert_id, e.state, e.ts) for e in events] == [("old-id", "escalated", T0 + 16 * Q)]
    # Without the checkpoint nothing in the band can be judged: no repeat, no escalation.
    assert after_restart(rule_type(), kind, "bin-1", T0, later[1:]) == []
    rule = relearnt(rule_type(), "bin-1", before)
    ended = [b(k, **{field: 0.0}) for k in (20, 21)]
    assert cleared(after_restart(rule, kind, "bin-1", T0, ended)) == ["old-id"]


def _first_unserved(rule: BinOverflowUnserved, recs: list[dict[str, Any]]) -> int | None:
    raised = [c.ts for c in feed(rule, recs) if c.active]
    return raised[0] if raised else None


@pytest.mark.parametrize("fill", [0.95, 0.85])
def test_an_overflow_checkpointed_6_h_in_is_unserved_12_h_after_it_began(fill: float) -> None:
    before = BinOverflowUnserved()
    feed(before, [b(k, fill_ratio=0.95) for k in range(25)])  # overflowing since T0, for 6 h
    assert before.learnt("bin-1") == [T0, T0 + 24 * Q]
    later = [b(k, fill_ratio=fill) for k in range(25, 80)]
    restarted = relearnt(BinOverflowUnserved(), "bin-1", before)
    assert _first_unserved(restarted, later) == T0 + 48 * Q
    # Without: 12 h from the first overflowing reading it saw, or never in the band.
    afresh = _first_unserved(BinOverflowUnserved(), later)
    assert afresh == (T0 + 73 * Q if fill > 0.9 else None)


def test_a_bins_checkpointed_fault_is_refused_when_damaged_and_dropped_when_forgotten() -> None:
    for state in ("x", True, -5):
        with pytest.raises(ValueError, match="not a bin_overflow time"):
            BinOverflow().relearn("bin-1", state)
    for pair in ([5, 3], ["x", 3]):
        with pytest.raises(ValueError):
            BinOverflowUnserved().relearn("bin-1", pair)
    over, unserved = BinOverflow(), BinOverflowUnserved()
    for rule in (over, unserved):
        feed(rule, [b(k, fill_ratio=0.95) for k in range(2)])
        assert rule.learnt("bin-1") is not None
        assert rule.forget({"bin-2"}) == () and rule.learnt("bin-1") is not None
        rule.forget({"bin-1"})
        assert rule.learnt("bin-1") is None
    feed(over, [b(k, fill_ratio=0.3) for k in range(2, 4)])
    assert over.learnt("bin-1") is None  # nothing to keep while the bin is not overflowing


def test_a_lamp_lit_again_ends_its_lamp_out() -> None:
    recs = [lamp("l1", NIGHT + k * 5 * MIN, 80.0) for k in range(4)]
    got = cleared(after_restart(LampOut(schedule()), "lamp_out", "l1", NIGHT - 60 * MIN, recs))
    assert got == ["old-id"]


LAMPS = CIRCUIT["circ-1"]


@pytest.mark.parametrize(
    ("model", "dark", "ends_after"),
    [
        (CIRCUIT, set(), 11),  # more than half the circuit seen lit: it has power
        (None, set(), 26),  # without a model, not before one interval (360 s) has passed
        (CIRCUIT, set(LAMPS[:10]), None),  # 10 of 20 dark: fewer than half known lit
    ],
)
def test_a_circuit_with_power_again_ends_its_outage(
    model: dict[str, list[str]] | None, dark: set[str], ends_after: int | None
) -> None:
    recs = circuit_night(NIGHT, LAMPS, 60, dark=dark or {"none"})
    rule = CircuitOutage(schedule(), circuits=model)
    first_clear, events = restart_run(rule, "circuit_outage", "circ-1", NIGHT - 60 * MIN, recs)
    assert first_clear == ends_after
    assert cleared(events) == ([] if ends_after is None else ["old-id"])


def test_a_circuit_settles_once_and_stays_settled() -> None:
    rule = CircuitOutage(schedule(), circuits=CIRCUIT)
    # By day nothing is judged: no clear on no evidence.
    day = [lamp(lid, NOON + k * 5 * MIN, 0.0, "circ-1") for k in range(3) for lid in LAMPS]
    out: list[Condition] = []
    for r in [*day, *circuit_night(None, LAMPS, 180)]:
        rule.on_reading(r, out)
    # The first clear, the last once the hold has passed, then nothing for hours.
    assert [c.active for c in out] == [False, False]
    assert out[0].ts < NIGHT + 5 * MIN and out[1].ts - out[0].ts == pytest.approx(10 * MIN, abs=MIN)
    # A circuit whose lamps went to another processor is new again when they come back.
    rule.forget({"lamp-03"})
    out.clear()
    for r in circuit_night(None, LAMPS, 5):
        rule.on_reading({**r, "ts": r["ts"] + 4 * 60 * MIN}, out)
    assert [c.active for c in out] == [False]


def test_idling_still_is_not_the_end_of_an_idle_alert() -> None:
    idle = [fix(k, 0.0, dt_s=60, ignition=True, speed_kmh=0.0) for k in range(15)]
    start = idle[0]["ts"] - 3600 * NS
    assert cleared(after_restart(IdleTooLong(PROJ), "idle_too_long", "truck-1", start, idle)) == []
    moving = idle + [
        fix(k, 500.0 * k, dt_s=60, ignition=True, speed_kmh=30.0) for k in range(15, 27)
    ]
    got = cleared(after_restart(IdleTooLong(PROJ), "idle_too_long", "truck-1", start, moving))
    assert got == ["old-id"]


def test_a_truck_within_its_limit_ends_an_overspeed() -> None:
    recs = [fix(k, 0.0, speed_kmh=40.0) for k in range(70)]  # 10 s apart: past the hold
    start = recs[0]["ts"] - 60 * NS
    got = cleared(after_restart(Overspeed(PROJ), "overspeed", "truck-1", start, recs))
    assert got == ["old-id"]


def dust(m: int, **fields: float) -> dict[str, Any]:
    """A site-1 sensor's reading at minute ``m`` of 2024-06-01 (UTC)."""
    ts = T0 - T0 % (86_400 * NS) + m * 60 * NS
    return {
        "device_id": "d-1",
        "family": "dust",
        "district": "n",
        "site_id": "site-1",
        "ts": ts,
        **fields,
    }


@pytest.mark.parametrize(("minutes", "ends"), [(45, False), (75, True)])
def test_a_site_calm_for_an_hour_ends_its_dust_exceedance(minutes: int, ends: bool) -> None:
    # 12:00 on: 20 µg/m³, far below the limit; a new rule's "1-h" mean needs the hour.
    recs = [dust(12 * 60 + m, pm10_ugm3=20.0) for m in range(minutes)]
    got = cleared(
        after_restart(DustExceedance(), "dust_exceedance", "site-1", T0 - 86_400 * NS, recs)
    )
    assert got == (["old-id"] if ends else [])


@pytest.mark.parametrize(
    ("start", "minutes", "ends"),
    [(23 * 60, 12, False), (23 * 60, 30, True), (8 * 60, 12, True)],  # by day: no night limit
)
def test_night_noise_ends_on_a_quarter_hour_of_quiet_or_on_daybreak(
    start: int, minutes: int, ends: bool
) -> None:
    recs = [dust(start + m, noise_dba=40.0) for m in range(minutes)]
    rule = NightNoise(LocalClock("UTC"))
    got = cleared(after_restart(rule, "night_noise", "site-1", T0 - 86_400 * NS, recs))
    assert got == (["old-id"] if ends else [])


def test_a_stuck_sensor_ends_when_its_values_move_again() -> None:
    flat = [dust(m, pm10_ugm3=33.0) for m in range(5)]
    assert (
        cleared(after_restart(StuckSensor(), "stuck_sensor", "d-1", T0 - 86_400 * NS, flat)) == []
    )
    moving = flat + [dust(5 + m, pm10_ugm3=30.0 + m) for m in range(12)]
    got = cleared(after_restart(StuckSensor(), "stuck_sensor", "d-1", T0 - 86_400 * NS, moving))
    assert got == ["old-id"]


@pytest.mark.parametrize(("e_value", "ends_at"), [(52.0, 5), (200.0, None)])
def test_a_sensor_in_line_for_five_minutes_ends_its_drift(
    e_value: float, ends_at: int | None
) -> None:
    recs = [
        {**dust(m, pm10_ugm3=(e_value if s == "e" else 50.0 + i) + m % 3), "device_id": s}
        for m in range(20)
        for i, s in enumerate("abcde")
    ]
    start = recs[0]["ts"] - 3600 * NS
    n, events = restart_run(SensorDrift(), "sensor_drift", "e", start, recs)
    first = None if n is None else (recs[n - 1]["ts"] - recs[0]["ts"]) // (60 * NS)
    # The first clear once e has been in line for 5 minutes; none while it is still off.
    assert first == ends_at
    assert cleared(events) == ([] if ends_at is None else ["old-id"])
