"""Routing: which crew gets an alert, and which channels hear about a work-order event.

Rules (``NotifierSettings.routes``) are tried in order; the first whose district, family,
minimum severity and shift hours match the alert wins, else ``default_crew``. Shift hours are
checked against the alert's own time (``ts``) in ``NotifierSettings.timezone``, so a replay
routes exactly as the first pass did.

Work-order events ``opened``, ``escalated`` (severity went up) and ``auto_resolved`` go to the
order's crew; SLA escalations ``sla_ack`` and ``sla_resolve`` go to the supervisor.

Example:
    >>> from citywatch.settings import NotifierSettings, RouteRule
    >>> r = Router(NotifierSettings(routes=[RouteRule(crew="crew-north", district="north")]))
    >>> r.crew_for({"district": "north", "family": "bin", "severity": "major", "ts": 0})
    'crew-north'
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from citywatch.settings import CrewSettings, NotifierSettings, RouteRule
from notifier.store import PlannedDelivery
from processors.alerts import SEVERITIES

CREW_EVENTS = frozenset({"opened", "escalated", "auto_resolved"})
SUPERVISOR_EVENTS = frozenset({"sla_ack", "sla_resolve"})


class RoutingError(ValueError):
    """The routing configuration is inconsistent (unknown crew, bad hours...)."""


def parse_hours(spec: str) -> tuple[time, time]:
    """``"22:00-06:00"`` -> (22:00, 06:00); the range may wrap midnight."""
    try:
        a, b = spec.split("-")
        return time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
    except ValueError as exc:
        raise RoutingError(f"bad shift hours {spec!r}; expected 'HH:MM-HH:MM'") from exc


def in_hours(t: time, start: time, end: time) -> bool:
    if start <= end:
        return start <= t < end
    return t >= start or t < end


class Router:
    def __init__(self, ns: NotifierSettings) -> None:
        self.ns = ns
        self.crews: dict[str, CrewSettings] = {c.id: c for c in ns.crews}
        self.tz = ZoneInfo(ns.timezone)
        self._hours: dict[int, tuple[time, time]] = {}
        for i, r in enumerate(ns.routes):
            if r.crew not in self.crews:
                raise RoutingError(f"route {i} names unknown crew {r.crew!r}")
            if r.min_severity not in SEVERITIES:
                raise RoutingError(f"route {i}: min_severity must be one of {SEVERITIES}")
            if r.hours:
                self._hours[i] = parse_hours(r.hours)
        if ns.default_crew not in self.crews:
            raise RoutingError(f"default_crew {ns.default_crew!r} is not among the crews")

    def _matches(self, i: int, r: RouteRule, ev: dict[str, Any]) -> bool:
        if r.district not in ("*", ev.get("district")):
            return False
        if r.family not in ("*", ev.get("family")):
            return False
        sev = ev.get("severity", "info")
        rank = SEVERITIES.index(sev) if sev in SEVERITIES else len(SEVERITIES) - 1
        if rank < SEVERITIES.index(r.min_severity):
            return False
        if i in self._hours:
            local = datetime.fromtimestamp(int(ev.get("ts", 0)) / 1e9, UTC).astimezone(self.tz)
            return in_hours(local.time(), *self._hours[i])
        return True

    def crew_for(self, ev: dict[str, Any]) -> str:
        for i, r in enumerate(self.ns.routes):
            if self._matches(i, r, ev):
                return r.crew
        return self.ns.default_crew

    def _targets(self, who: CrewSettings, event: str) -> list[PlannedDelivery]:
        out: list[PlannedDelivery] = []
        if who.webhook_url:
            out.append(PlannedDelivery(event, "webhook", who.webhook_url, who.id))
        if who.mqtt:
            out.append(PlannedDelivery(event, "mqtt", who.id, who.id))
        for addr in who.email:
            out.append(PlannedDelivery(event, "email", addr, who.id))
        return out

    def plan(self, order: dict[str, Any], event: str) -> list[PlannedDelivery]:
        """Deliveries for one work-order event (see the module docstring)."""
        if event in SUPERVISOR_EVENTS:
            return self._targets(self.ns.supervisor, event)
        if event in CREW_EVENTS:
            crew = self.crews.get(order["crew_id"])
            return self._targets(crew, event) if crew is not None else []
        return []
