"""Alert manager: deterministic ids, hysteresis, escalation, clearing."""

from __future__ import annotations

from processors.alerts import AlertManager, AlertPolicy, alert_id
from processors.rules.base import Condition

S = 1_000_000_000


def cond(active: bool, t: float, severity: str = "warning") -> Condition:
    return Condition(
        "bin_overflow", "bin-1", "device", active, int(t * S), severity, "bin", "n", "m"
    )


def test_same_episode_same_id_on_replay() -> None:
    seq = [cond(True, 0), cond(True, 60), cond(False, 120), cond(False, 900)]
    runs = []
    for _ in range(2):
        am = AlertManager(AlertPolicy(clear_after_s=600))
        runs.append([(e.alert_id, e.state) for c in seq for e in am.apply(c)])
    assert runs[0] == runs[1]
    assert runs[0] == [
        (alert_id("bin-1", "bin_overflow", 0), "raised"),
        (alert_id("bin-1", "bin_overflow", 0), "cleared"),
    ]


def test_flapping_within_clear_window_stays_one_episode() -> None:
    am = AlertManager(AlertPolicy(clear_after_s=600))
    events = []
    for i in range(10):
        events += am.apply(cond(i % 2 == 0, i * 60))
    assert [e.state for e in events] == ["raised"]


def test_escalates_once_after_sla() -> None:
    am = AlertManager(AlertPolicy(clear_after_s=600, escalate_after_s={"warning": 3600}))
    events = []
    for t in range(0, 3 * 3600, 300):
        events += am.apply(cond(True, t))
    assert [e.state for e in events] == ["raised", "escalated"]
    assert events[1].severity == "major" and events[1].alert_id == events[0].alert_id


def test_new_episode_after_clear_gets_new_id() -> None:
    am = AlertManager(AlertPolicy(clear_after_s=0))
    a = am.apply(cond(True, 0))[0]
    assert am.apply(cond(False, 10))[0].state == "cleared"
    b = am.apply(cond(True, 20))[0]
    assert b.state == "raised" and b.alert_id != a.alert_id


def test_inactive_condition_without_episode_emits_nothing() -> None:
    assert AlertManager().apply(cond(False, 0)) == []


def test_a_late_reading_never_clears_an_episode_before_it_began() -> None:
    from processors.engine import alert_line

    am = AlertManager(AlertPolicy(clear_after_s=0))
    raised = am.apply(cond(True, 1000))[0]
    cleared = am.apply(cond(False, 970))[0]  # the delayed reading's time
    assert cleared.state == "cleared" and cleared.ts == raised.ts
    assert "duration_s=0," in alert_line(cleared)
    am.apply(cond(True, 2000))
    later = am.apply(cond(False, 2600))[0]
    assert "duration_s=600," in alert_line(later)
