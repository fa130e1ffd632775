"""Rules that checkpoint their whole streak (``Streak.state``) judge after a restart exactly as
the uninterrupted rule does: a drift 28 minutes along raises 2 minutes later, a lamp's clear
held at the checkpoint ends its episode at the same reading, and the alert manager that
adopts the episode learns when its fault ended (``AlertManager.quiet``)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from rulefeed import feed
from test_fresh_clears import restart_run
from test_rules_dust import MIN, T_DAY, T_NIGHT, clock, district, noise
from test_rules_streetlight import NIGHT, lamp, schedule

from processors.alerts import AlertEvent, AlertManager, AlertPolicy
from processors.config import RulesConfig
from processors.engine import Engine
from processors.rules.base import Rule
from processors.rules.dust.dust_exceedance import DustExceedance
from processors.rules.dust.night_noise import NightNoise
from processors.rules.dust.sensor_drift import SensorDrift
from processors.rules.streak import Streak, StreakParams
from processors.rules.streetlight.lamp_degradation import LampDegradation

P = StreakParams(need=3, clear_need=2, hold_ns=100, repeat_ns=30, fresh_clears=True)


def _copy(s: Streak) -> Streak:
    twin = Streak()
    twin.load(orjson.loads(orjson.dumps(s.state())))
    return twin


def test_a_loaded_streak_steps_as_the_one_it_was_taken_from() -> None:
    verdicts = [True, True, True, True, False, False, None, False, True, True, False, False]
    for cut in range(len(verdicts)):
        whole, part = Streak(), Streak()
        for t, bad in enumerate(verdicts[:cut], 1):
            whole.step(t * 10, bad, P)
            part.step(t * 10, bad, P)
        twin = _copy(part)
        got = [twin.step(t * 10, bad, P) for t, bad in enumerate(verdicts, 1)]
        want = [whole.step(t * 10, bad, P) for t, bad in enumerate(verdicts, 1)]
        assert got == want, cut


def test_a_settled_streak_is_kept_as_its_last_time_and_damage_is_refused() -> None:
    s = Streak()
    for t in (1, 2, 300, 400):  # fresh clears, then the hold passes: settled
        s.step(t, False, P)
    assert s.state() == 400
    back = _copy(s)
    assert (back.last_ts, back.on, back.fresh, back.off_since) == (400, False, False, None)
    s.step(401, True, P)
    assert isinstance(s.state(), list)
    for damaged in ("on", True, [1, 2], [1, 0, 0, 0, "yes", 0, None, False], [1.5] + [0] * 7):
        with pytest.raises(ValueError, match="not a streak"):
            Streak().load(damaged)


def test_a_drift_28_minutes_along_at_the_checkpoint_raises_when_it_would_have() -> None:
    up = {"s1-a": lambda m, v: v + 60.0 if m >= 10 else v}
    recs = district(range(0, 60), up)
    whole = [c.ts for c in feed(SensorDrift(), recs) if c.active]
    before, kill = SensorDrift(), T_DAY + 38 * MIN  # off since minute 10
    feed(before, [r for r in recs if r["ts"] < kill])
    restarted = SensorDrift()
    for dev in {r["device_id"] for r in recs}:
        restarted.relearn(dev, orjson.loads(orjson.dumps(before.learnt(dev))))
    replay = [r for r in recs if r["ts"] >= kill - 15 * MIN]
    got = [c.ts for c in feed(restarted, replay) if c.active]
    assert whole and got == whole
    # Without: the 30 minutes start again with the replay, 13 minutes late.
    afresh = [c.ts for c in feed(SensorDrift(), replay) if c.active]
    assert afresh and afresh[0] - whole[0] >= 12 * MIN
    assert restarted.forget({"s1-a"}) == () and restarted.learnt("s1-a") is None


def test_a_damaged_drift_state_is_refused_and_an_older_one_ignored() -> None:
    rule = SensorDrift()
    feed(rule, district(range(0, 5), {}))
    state = rule.learnt("s1-a")
    with pytest.raises(ValueError):
        SensorDrift().relearn("s1-a", [7, *state[1:]])
    with pytest.raises(ValueError):
        SensorDrift().relearn("s1-a", [*state[:-1], "on"])
    older = [*state[:4], state[4] - MIN, *state[5:]]
    rule.relearn("s1-a", older)  # the rule has seen newer readings of it: kept
    assert rule.learnt("s1-a") == state


def _lamp(watts: list[float], start: int = 0) -> list[dict[str, Any]]:
    return [lamp("l1", NIGHT + (start + k) * 5 * MIN, w) for k, w in enumerate(watts)]


def _whole(rule: Rule, recs: list[dict[str, Any]]) -> list[AlertEvent]:
    """The alert events of an uninterrupted run."""
    am = AlertManager(AlertPolicy(clear_after_s=600))
    return [e for c in feed(rule, recs) for e in am.apply(c)]


def _restarted_clears(
    rule: Rule,
    before: Rule | None,
    raised: AlertEvent,
    recs: list[dict[str, Any]],
    told: bool = True,
) -> list[int]:
    """Clears of ``raised``'s episode by ``rule``, adopting it as a restarted processor does,
    given what ``before`` learnt of the devices of ``recs`` (None: no checkpoint), and
    ``told`` the manager when the faults its checkpoint is clearing ended, as the engine does."""
    quiet: list[tuple[str, str, int]] = []
    for dev in sorted({r["device_id"] for r in recs}):
        if before is None:
            break
        rule.relearn(dev, orjson.loads(orjson.dumps(before.learnt(dev))))
        quiet += rule.clearing(dev) if told else ()
    events = restart_run(rule, raised.kind, raised.target, raised.ts, recs, quiet)[1]
    return [e.ts for e in events if e.state == "cleared"]


@pytest.mark.parametrize("told", [True, False])
def test_a_lamp_clear_held_at_the_checkpoint_ends_the_episode_on_time(told: bool) -> None:
    # Learnt at 100 W, 30 % low for 3 readings (raised), then repaired: cleared after 3 good
    # readings, and the episode once the condition stayed inactive for 600 s.
    recs = _lamp([100.0] * 12 + [70.0] * 3 + [100.0] * 12)
    events = _whole(LampDegradation(schedule()), recs)
    raised = next(e for e in events if e.state == "raised")
    want = [e.ts for e in events if e.state == "cleared"]
    kill = 19  # the 4th good reading: the clear is being held
    before = LampDegradation(schedule())
    feed(before, recs[:kill])
    assert before.clearing("l1") == [("lamp_degradation", "l1", recs[17]["ts"])]
    # The replay brings readings the checkpoint holds again: the streak skips them.
    got = _restarted_clears(LampDegradation(schedule()), before, raised, recs[kill - 3 :], told)
    # Not told when the fault ended, the manager counted from the first condition it saw,
    # and the rule's last inactive condition came too soon: the crews' alert stayed open.
    assert len(want) == 1 and got == (want if told else [])


def test_a_night_noise_clear_held_at_the_checkpoint_ends_the_episode_on_time() -> None:
    # Loud until 23:30, then quiet: the 15-min mean is back below 53 dBA at about 23:45.
    recs = noise(range(0, 30), 70.0) + noise(range(30, 80), 45.0)
    events = _whole(NightNoise(clock()), recs)
    raised = next(e for e in events if e.state == "raised")
    want = [e.ts for e in events if e.state == "cleared"]
    kill = T_NIGHT + 50 * MIN
    before = NightNoise(clock())
    feed(before, [r for r in recs if r["ts"] < kill])
    replay = [r for r in recs if r["ts"] >= kill - 15 * MIN]
    assert len(want) == 1
    assert _restarted_clears(NightNoise(clock()), before, raised, replay) == want
    # Without: a new state's mean is not trusted for its first 15 minutes, 5 minutes late.
    afresh = _restarted_clears(NightNoise(clock()), None, raised, replay)
    assert len(afresh) == 1 and afresh[0] - want[0] >= 4 * MIN


def test_the_engine_tells_the_alert_manager_what_a_relearnt_rule_is_clearing() -> None:
    eng = Engine(RulesConfig())
    rule = eng.learners["dust_exceedance"]
    assert isinstance(rule, DustExceedance)
    state = ["site-1", 5 * MIN, 0, [5 * MIN, 0, 0, 0, False, 5 * MIN, 4 * MIN, False], [0, []]]
    eng.restore("s1-a", 5 * MIN, {}, {"dust_exceedance": state})
    assert eng.alerts.quiet_since == {("dust_exceedance", "site-1"): 4 * MIN}
    # Until 2026-12-07 the streak was kept as whether it was on: still taken.
    eng.restore("s2-a", 5 * MIN, {}, {"dust_exceedance": ["site-2", 5 * MIN, 0, True, [0, []]]})
    assert rule.sites["site-2"].streak.on and eng.restore_refused == 0
