"""Streak: counting, ordering, gaps, re-emission and the hold that lets the alert manager clear."""

from __future__ import annotations

from processors.alerts import AlertManager, AlertPolicy
from processors.rules.base import Condition
from processors.rules.streak import EMIT_OFF, EMIT_ON, NOTHING, NS, Streak, StreakParams

P = StreakParams(need=3, clear_need=2, hold_ns=600 * NS, repeat_ns=60 * NS, max_gap_ns=300 * NS)


def run(steps: list[tuple[int, bool | None]], p: StreakParams = P) -> list[int]:
    s = Streak()
    return [s.step(t * NS, bad, p) for t, bad in steps]


def test_raises_after_need_consecutive_bad_and_not_before() -> None:
    assert run([(0, True), (10, True)]) == [NOTHING, NOTHING]
    assert run([(0, True), (10, True), (20, True)])[-1] == EMIT_ON


def test_a_good_reading_restarts_the_count() -> None:
    assert EMIT_ON not in run([(0, True), (10, True), (20, False), (30, True), (40, True)])


def test_not_judged_neither_counts_nor_resets() -> None:
    assert run([(0, True), (10, None), (20, True), (30, True)])[-1] == EMIT_ON
    assert EMIT_ON not in run([(0, True), (10, None), (20, None), (30, True)])


def test_duplicates_and_older_readings_are_ignored() -> None:
    assert EMIT_ON not in run([(10, True), (10, True), (10, True)])
    assert EMIT_ON not in run([(20, True), (10, True), (15, True)])


def test_gap_longer_than_max_restarts_the_count() -> None:
    assert EMIT_ON not in run([(0, True), (10, True), (400, True)])
    assert run([(0, True), (10, True), (400, True), (410, True), (420, True)])[-1] == EMIT_ON


def test_min_span() -> None:
    p = StreakParams(need=2, min_span_ns=240 * NS)
    assert run([(0, True), (60, True)], p) == [NOTHING, NOTHING]
    assert run([(0, True), (60, True), (300, True)], p)[-1] == EMIT_ON


def test_clear_needs_clear_need_good_readings() -> None:
    r = run([(0, True), (10, True), (20, True), (30, False), (40, False)])
    assert r[-2:] == [NOTHING, EMIT_OFF]


def test_active_is_repeated_at_most_every_repeat() -> None:
    r = run([(t, True) for t in range(0, 200, 10)])
    ons = [i * 10 for i, x in enumerate(r) if x == EMIT_ON]
    assert ons == [20, 80, 140]


def test_inactive_is_held_for_hold_then_quiet() -> None:
    steps = [(0, True), (10, True), (20, True), (30, False), (40, False)]
    steps += [(t, False) for t in range(100, 1500, 100)]
    r = run(steps)
    offs = [steps[i][0] for i, x in enumerate(r) if x == EMIT_OFF]
    assert offs[0] == 40
    assert max(offs) == 700  # 40 + 600 s hold, then nothing more
    assert all(x == NOTHING for x in r[-7:])


def test_with_the_alert_manager_one_raise_one_clear() -> None:
    am = AlertManager(AlertPolicy(clear_after_s=600))
    s = Streak()
    p = StreakParams(need=2, clear_need=1, hold_ns=600 * NS, repeat_ns=60 * NS)
    states = []
    for t in range(0, 3600, 30):
        bad = 300 <= t < 1200
        r = s.step(t * NS, bad, p)
        if r:
            c = Condition("k", "dev", "device", r == EMIT_ON, t * NS, "warning", "bin", "d", "")
            states += [e.state for e in am.apply(c)]
    assert states == ["raised", "cleared"]
