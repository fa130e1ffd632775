"""Open episodes continued across a restart: the alert manager keeps an adopted episode's id."""

from __future__ import annotations

import orjson

from processors.alerts import AlertEvent, AlertManager, AlertPolicy, Episode
from processors.config import RulesConfig
from processors.engine import Engine
from processors.open_alerts import episode, record
from processors.rules.base import Condition

NS = 1_000_000_000
HOUR = 3600 * NS


def _cond(active: bool, ts: int) -> Condition:
    return Condition("bin_overflow", "bin-1", "device", active, ts, "warning", "bin", "n", "full")


def _adopted_from(events: list[AlertEvent]) -> AlertManager:
    """A fresh manager given what the open-alerts topic holds after ``events``."""
    latest: dict[bytes, bytes | None] = {}
    for ev in events:
        key, value = record("g", ev, ev.to_json())
        latest[key] = value
    am = AlertManager(AlertPolicy(clear_after_s=600))
    am.adopt(dict(got for v in latest.values() if v and (got := episode(v)) is not None))
    return am


def test_a_restarted_manager_continues_an_open_episode_under_its_id() -> None:
    first = AlertManager(AlertPolicy(clear_after_s=600))
    raised = first.apply(_cond(True, 0))
    escalated = first.apply(_cond(True, 5 * HOUR))  # warning escalates after 4 h
    assert [e.state for e in raised + escalated] == ["raised", "escalated"]
    am = _adopted_from(raised + escalated)
    # The replay reaches back 15 minutes, not to the episode's start.
    assert am.apply(_cond(True, 6 * HOUR)) == []  # no second "raised", no second escalation
    am.apply(_cond(False, 7 * HOUR))
    cleared = am.apply(_cond(False, 7 * HOUR + 600 * NS))
    assert [(e.state, e.alert_id, e.episode_start, e.severity) for e in cleared] == [
        ("cleared", raised[0].alert_id, 0, "major")
    ]


def test_a_cleared_episode_is_not_adopted_and_old_conditions_do_not_take_one() -> None:
    first = AlertManager(AlertPolicy(clear_after_s=0))
    events = first.apply(_cond(True, HOUR)) + first.apply(_cond(False, 2 * HOUR))
    assert not _adopted_from(events).adopted  # the tombstone
    am = _adopted_from(events[:1])
    assert am.apply(_cond(False, HOUR - 1)) == []  # from before the episode: left alone
    assert ("bin_overflow", "bin-1") in am.adopted


def test_a_replayed_raise_from_before_an_adopted_episode_is_no_second_alert() -> None:
    # A window refilled from the 15-minute replay may cross its limit before the episode the
    # previous run raised with the whole window: that time was judged already.
    first = AlertManager(AlertPolicy(clear_after_s=600))
    raised = first.apply(_cond(True, HOUR))
    am = _adopted_from(raised)
    assert am.apply(_cond(True, HOUR - 300 * NS)) == []
    assert am.apply(_cond(True, HOUR + 60 * NS)) == []  # continued, under its id
    am.apply(_cond(False, 2 * HOUR))
    cleared = am.apply(_cond(False, 2 * HOUR + 600 * NS))
    assert [(e.state, e.alert_id) for e in cleared] == [("cleared", raised[0].alert_id)]


def _bin(dev: str, q: int, fill: float) -> dict[str, object]:
    return {"device_id": dev, "family": "bin", "district": "n", "ts": q * 900 * NS,
            "fill_ratio": fill}  # fmt: skip


def test_the_replay_brings_adopted_episodes_up_to_date_and_opens_none() -> None:
    eng = Engine(RulesConfig())
    eng.alerts.adopt({("bin_overflow", "bin-1"): Episode("old", 0, "warning", 0)})
    # Replayed: bin-1 emptied at q=1 (its clear's hold starts there); bin-2 overflowing with
    # no episode open at the kill: the run before raised and cleared it, or judged it with
    # more history. Only a live reading can raise it now.
    replay = [_bin("bin-1", 0, 0.95), _bin("bin-2", 0, 0.95), _bin("bin-1", 1, 0.3)]
    assert eng.process(replay, tick=False, replay=True).events == []
    live = eng.process([_bin("bin-1", 2, 0.3), _bin("bin-2", 2, 0.5)])
    # The hold (600 s) ran from q=1: cleared at q=2, where a hold started at the first live
    # reading never ended (the rule's last clear had gone out in the replay).
    assert [(e.alert_id, e.state, e.ts) for e in live.events] == [("old", "cleared", 1800 * NS)]


def test_unreadable_or_cleared_events_are_no_episode() -> None:
    assert episode(b"{") is None
    assert episode(orjson.dumps({"state": "cleared"})) is None
    assert episode(orjson.dumps({"state": "raised", "severity": "loud"})) is None
