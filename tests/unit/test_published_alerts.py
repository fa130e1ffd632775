"""The processor's memory of alert events already published (used to skip replayed ones)."""

from __future__ import annotations

import orjson

from processors.published import PublishedAlerts


def test_bounded_and_oldest_evicted_first() -> None:
    seen = PublishedAlerts(max_keys=3)
    for i in range(5):
        seen.add((f"a{i}", "raised", i))
    assert len(seen) == 3
    assert ("a0", "raised", 0) not in seen and ("a1", "raised", 1) not in seen
    assert ("a4", "raised", 4) in seen
    assert ("a4", "cleared", 4) not in seen  # another state is another event


def test_records_from_the_topic_are_keyed_like_events_and_junk_is_ignored() -> None:
    seen = PublishedAlerts()
    ev = {"alert_id": "x1", "state": "raised", "ts": 1_700_000_000_000_000_000, "kind": "k"}
    assert seen._take(orjson.dumps(ev)) == 1
    assert ("x1", "raised", 1_700_000_000_000_000_000) in seen
    assert seen._take(b"not json") == 0
    assert seen._take(orjson.dumps({"alert_id": "x2"})) == 0
    assert len(seen) == 1
