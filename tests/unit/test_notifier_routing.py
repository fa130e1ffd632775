"""Routing rules: district/family/severity/shift matching, channel plans, config errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from citywatch.settings import CrewSettings, NotifierSettings, RouteRule
from notifier.routing import Router, RoutingError, in_hours, parse_hours


def ns(routes: list[RouteRule], tz: str = "UTC") -> NotifierSettings:
    crews = [
        CrewSettings(id=c, webhook_url=f"http://h/{c}", email=[f"{c}@x"])
        for c in ("day", "night", "fire", "default")
    ]
    return NotifierSettings(
        crews=crews,
        routes=routes,
        default_crew="default",
        timezone=tz,
        supervisor=CrewSettings(id="sup", email=["sup@x"], mqtt=False),
    )


def at(hour: int, minute: int = 0) -> int:
    return int(datetime(2026, 1, 5, hour, minute, tzinfo=UTC).timestamp() * 1e9)


def test_first_matching_rule_wins_with_shift_and_severity() -> None:
    r = Router(
        ns(
            [
                RouteRule(crew="fire", family="bin", min_severity="critical"),
                RouteRule(crew="night", district="north", hours="22:00-06:00"),
                RouteRule(crew="day", district="north"),
            ]
        )
    )
    base = {"district": "north", "family": "bin", "severity": "major"}
    assert r.crew_for({**base, "ts": at(12)}) == "day"
    assert r.crew_for({**base, "ts": at(23, 30)}) == "night"
    assert r.crew_for({**base, "ts": at(5, 59)}) == "night"
    assert r.crew_for({**base, "ts": at(6)}) == "day"
    assert r.crew_for({**base, "severity": "critical", "ts": at(12)}) == "fire"
    assert r.crew_for({**base, "district": "south", "ts": at(12)}) == "default"


def test_shift_in_local_time() -> None:
    # 21:30 UTC is 22:30 in Berlin in winter: the night shift.
    r = Router(ns([RouteRule(crew="night", hours="22:00-06:00")], tz="Europe/Berlin"))
    assert r.crew_for({"district": "a", "family": "bin", "ts": at(21, 30)}) == "night"
    assert r.crew_for({"district": "a", "family": "bin", "ts": at(20, 30)}) == "default"


def test_plans_per_event() -> None:
    r = Router(ns([]))
    plan = r.plan({"crew_id": "day"}, "opened")
    assert [(p.channel, p.recipient) for p in plan] == [
        ("webhook", "http://h/day"),
        ("mqtt", "day"),
        ("email", "day@x"),
    ]
    assert [(p.channel, p.crew_id) for p in r.plan({"crew_id": "day"}, "sla_ack")] == [
        ("email", "sup")
    ]
    assert r.plan({"crew_id": "gone"}, "opened") == []
    assert r.plan({"crew_id": "day"}, "updated") == []


def test_bad_config_is_a_clear_error() -> None:
    with pytest.raises(RoutingError, match="unknown crew"):
        Router(ns([RouteRule(crew="nobody")]))
    with pytest.raises(RoutingError, match="HH:MM"):
        Router(ns([RouteRule(crew="day", hours="late")]))
    with pytest.raises(RoutingError, match="min_severity"):
        Router(ns([RouteRule(crew="day", min_severity="apocalyptic")]))


def test_hours_helpers() -> None:
    a, b = parse_hours("08:00-16:30")
    assert in_hours(a, a, b) and not in_hours(b, a, b)
