"""Trip summaries: per vehicle and local day, mileage, operating hours and route coverage.

A rule that raises nothing: it accumulates as vehicle fixes pass (O(1) per fix) and the app
collects the results as KPI points with :meth:`TripSummaries.kpi_points`::

    {"measurement": "trips", "tags": {"vehicle": ..., "day": "2024-06-01", "kind": "muck"},
     "fields": {"mileage_km": ..., "mileage_source": "odometer" | "gps",
                "operating_h": ..., "route_coverage": 0..1, "fixes": ..., "jumps_dropped": ...},
     "ts": <local midnight of the day, UTC ns>}

- mileage: odometer (max - min over the day) when the vehicle reports one, else the
  haversine sum between consecutive good fixes (GPS jumps dropped by the same filter as the
  vehicle rules; not computed at all once an odometer reading arrived that day);
- operating hours: time between consecutive fixes with the ignition on at both (a gap longer
  than ``max_gap_s`` counts only up to it: we do not know what happened in it);
- route coverage: share of the route line (sampled every 25 m) within 50 m of some good fix
  (judged per 10 m cell, see :class:`RouteSampler`).

A day is final ``trip_close_after_s`` after local midnight ends (late fixes still count until
then); the point's time is the day's local midnight, so re-emitting a day overwrites it.

The open days are checkpointed with each vehicle (``learnt``): a processor restarted at 15:00,
or one that took the vehicle over in a rebalance, goes on from the morning's totals instead of
writing the day as if it began at 14:45. A restored day's last fix time makes the replayed
fixes it already holds no-ops. A processor that gives a vehicle up drops its days
(``forget``): the new owner continues them, and two partial days do not overwrite each other.

Example:
    >>> from processors.rules.solar import LocalClock
    >>> t = TripSummaries(LocalProjection(31.23, 121.47), LocalClock("UTC"))
    >>> for i in range(4):
    ...     t.on_reading({"device_id": "truck-1", "family": "vehicle", "district": "c",
    ...                   "vehicle_kind": "garbage", "ts": i * 10 * NS, "ignition": True,
    ...                   "lat": 31.23 + i * 0.001, "lon": 121.47}, [])
    >>> p = t.kpi_points(2 * 86400 * NS)[0]
    >>> p["tags"], round(p["fields"]["mileage_km"], 3), round(p["fields"]["operating_h"] * 3600)
    ({'vehicle': 'truck-1', 'day': '1970-01-01', 'kind': 'garbage'}, 0.334, 30)
"""

from __future__ import annotations

import math
from collections.abc import Collection, Container, Mapping
from datetime import date, timedelta
from typing import Any, ClassVar

import shapely
from shapely.geometry.base import BaseGeometry

from processors.config import RulesConfig, VehicleRulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.solar import LocalClock, city_timezone
from processors.rules.streak import NS
from processors.rules.vehicle.coverage import RouteSampler
from processors.rules.vehicle.fixes import OK, FixFilter
from processors.rules.vehicle.geo import (
    LocalProjection,
    haversine_m,
    model_vehicle_routes,
    projection_for,
)

_NEVER = 2**62


class _Day:
    __slots__ = (
        "covered",
        "day",
        "fixes",
        "gps_m",
        "hi",
        "jumps",
        "kind",
        "last_ign",
        "last_ts",
        "lat",
        "lo",
        "lon",
        "odo_max",
        "odo_min",
        "op_ns",
        "route",
        "sampler",
    )

    def __init__(
        self,
        day: int,
        kind: str,
        route: str | None,
        sampler: RouteSampler | None,
        lo: int,
        hi: int,
    ) -> None:
        self.day = day  # local days since 1970-01-01
        self.kind = kind
        self.route = route
        self.sampler = sampler
        self.lo, self.hi = lo, hi  # the local day in UTC ns: [lo, hi)
        self.odo_min = math.inf
        self.odo_max = -math.inf
        self.gps_m = 0.0
        self.op_ns = 0
        self.last_ts = -(2**62)
        self.last_ign = False
        self.lat: float | None = None  # last good fix of the day
        self.lon = 0.0
        self.covered: set[int] = set()
        self.fixes = 0
        self.jumps = 0


class TripSummaries(Rule):
    """Per vehicle and local day: mileage, operating hours and route coverage (no alerts)."""

    name: ClassVar[str] = "trip_summary"
    families: ClassVar[tuple[str, ...]] = ("vehicle",)
    description: ClassVar[str] = "daily mileage, operating hours, route coverage (KPIs)"
    learns: ClassVar[bool] = True

    def __init__(
        self,
        proj: LocalProjection,
        clock: LocalClock,
        routes: Mapping[str, BaseGeometry] | None = None,
        vehicle_route: Mapping[str, str] | None = None,
        cfg: VehicleRulesConfig | None = None,
    ) -> None:
        self.cfg = c = cfg or VehicleRulesConfig()
        self.proj = proj
        self.clock = clock
        self.filter = FixFilter(c.jump_kmh, c.jump_min_m)
        self.routes = {
            rid: RouteSampler(proj.geom(g), c.coverage_m) for rid, g in (routes or {}).items()
        }
        self.vehicle_route = dict(vehicle_route or {})
        self.days: dict[tuple[str, int], _Day] = {}
        self.current: dict[str, _Day] = {}  # each vehicle's latest day: most fixes land there
        self.max_gap_ns = int(c.max_gap_s * NS)
        self.close_ns = int(c.trip_close_after_s * NS)
        self.watermark = 0
        # No held day closes before this (a lower bound): the app asks for finished days
        # after every batch, and scanning every vehicle's days (a timezone conversion each)
        # every time is wasted until one can close.
        self._next_close = _NEVER

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        dev, ts = rec["device_id"], rec["ts"]
        if ts > self.watermark:
            self.watermark = ts
        d = self.current.get(dev)
        if d is None or not d.lo <= ts < d.hi:
            day = self.clock.local_day(ts)
            d = self.days.get((dev, day))
            if d is None:
                route = rec.get("route_id") or self.vehicle_route.get(dev)
                d = self.days[(dev, day)] = self._day(
                    day, rec.get("vehicle_kind", "unknown"), route
                )
            if self.current.get(dev) is None or d.lo >= self.current[dev].lo:
                self.current[dev] = d
        odo = rec.get("odometer_km")
        if odo is not None:  # order does not matter for min/max
            if odo < d.odo_min:
                d.odo_min = odo
            if odo > d.odo_max:
                d.odo_max = odo
        if ts <= d.last_ts:
            return
        ign = rec.get("ignition")
        if ign and d.last_ign:
            d.op_ns += min(ts - d.last_ts, self.max_gap_ns)
        d.last_ts = ts
        if ign is not None:
            d.last_ign = bool(ign)
        d.fixes += 1
        lat, lon = rec.get("lat"), rec.get("lon")
        if lat is None or lon is None:
            return
        x, y = self.proj.xy(lat, lon)
        if self.filter.check(dev, ts, x, y) != OK:
            d.jumps += 1
            return
        if d.odo_max < d.odo_min:  # no odometer today: GPS distance is the mileage
            if d.lat is not None:
                d.gps_m += haversine_m(d.lat, d.lon, lat, lon)
            d.lat, d.lon = lat, lon
        if d.sampler is not None:
            near = d.sampler.near(x, y)
            if near:
                d.covered.update(near)

    def _day(self, day: int, kind: str, route: str | None) -> _Day:
        d = _Day(
            day,
            kind,
            route,
            self.routes.get(route) if route is not None else None,
            self.clock.day_start_ns(day),
            self.clock.day_start_ns(day + 1),
        )
        self._next_close = min(self._next_close, d.hi + self.close_ns)
        return d

    def _open_days(self, dev: str) -> list[_Day]:
        """The vehicle's days still held: its latest, and the one before while not closed."""
        cur = self.current.get(dev)
        if cur is None:
            return []
        before = self.days.get((dev, cur.day - 1))
        return [cur] if before is None else [before, cur]

    def learnt(self, device: str) -> Any:
        out = []
        for d in self._open_days(device):
            fin = d.odo_max >= d.odo_min  # JSON holds no infinities: no odometer, None
            out.append(
                [
                    d.day,
                    d.kind,
                    d.route,
                    d.odo_min if fin else None,
                    d.odo_max if fin else None,
                    d.gps_m,
                    d.op_ns,
                    d.last_ts,
                    d.last_ign,
                    d.lat,
                    d.lon,
                    sorted(d.covered),
                    d.fixes,
                    d.jumps,
                ]
            )
        return out or None

    def relearn(self, device: str, state: Any) -> None:
        days = []
        for row in state:
            day, kind, route, lo, hi, gps_m, op_ns, last_ts, last_ign, lat, lon, cov, n, j = row
            if not isinstance(day, int) or not isinstance(kind, str):
                raise ValueError(f"not a trip day: {row!r}")
            d = self._day(day, kind, route)
            if lo is not None:
                d.odo_min, d.odo_max = float(lo), float(hi)
            d.gps_m, d.op_ns, d.last_ts = float(gps_m), int(op_ns), int(last_ts)
            d.last_ign = bool(last_ign)
            d.lat, d.lon = (None, 0.0) if lat is None else (float(lat), float(lon))
            d.covered = {int(i) for i in cov}
            d.fixes, d.jumps = int(n), int(j)
            days.append(d)
        latest = max((d.last_ts for d in days), default=0)
        for d in days:
            # A day closed before the vehicle's last fix was written by the previous run.
            if d.hi + self.close_ns > latest:
                self.days[(device, d.day)] = d
                cur = self.current.get(device)
                if cur is None or d.lo >= cur.lo:
                    self.current[device] = d

    def forget(self, devices: Container[str]) -> Collection[str]:
        for key in [k for k in self.days if k[0] in devices]:
            del self.days[key]
        for dev in [v for v in self.current if v in devices]:
            del self.current[dev]
        return ()

    def _point(self, dev: str, day: int, d: _Day) -> dict[str, Any]:
        odo = d.odo_max - d.odo_min if d.odo_max >= d.odo_min else None
        fields: dict[str, Any] = {
            "mileage_km": odo if odo is not None else d.gps_m / 1000.0,
            "mileage_source": "odometer" if odo is not None else "gps",
            "operating_h": d.op_ns / (3600 * NS),
            "fixes": d.fixes,
            "jumps_dropped": d.jumps,
        }
        sampler = self.routes.get(d.route) if d.route is not None else None
        if sampler is not None:
            fields["route_coverage"] = len(d.covered) / sampler.n
        return {
            "measurement": "trips",
            "tags": {
                "vehicle": dev,
                "day": (date(1970, 1, 1) + timedelta(days=day)).isoformat(),
                "kind": d.kind,
            },
            "fields": fields,
            "ts": self.clock.day_start_ns(day),
        }

    def kpi_points(
        self, now_ns: int | None = None, include_open: bool = False
    ) -> list[dict[str, Any]]:
        """Summaries of the days that are over at event time ``now_ns`` (default: the
        latest fix seen), which are then forgotten; ``include_open`` adds the running
        values of the days still open (kept)."""
        now = self.watermark if now_ns is None else now_ns
        out: list[dict[str, Any]] = []
        if now < self._next_close and not include_open:
            return out
        done: list[tuple[str, int]] = []
        next_close = _NEVER
        for (dev, day), d in self.days.items():
            # d.hi, the next local midnight, not day start + 24 h: a DST day is 23 or 25 h.
            close = d.hi + self.close_ns
            closed = now >= close
            if closed or include_open:
                out.append(self._point(dev, day, d))
            if closed:
                done.append((dev, day))
            elif close < next_close:
                next_close = close
        self._next_close = next_close
        for k in done:
            d = self.days.pop(k)
            if self.current.get(k[0]) is d:
                del self.current[k[0]]
        return out

    def flush(self) -> list[dict[str, Any]]:
        """Every day still held (e.g. at shutdown), then forget them."""
        out = [self._point(dev, day, d) for (dev, day), d in self.days.items()]
        self.days.clear()
        self.current.clear()
        self._next_close = _NEVER
        return out


def build(cfg: RulesConfig, city: Any) -> Rule:
    routes = (
        {rid: shapely.LineString(r.line.coordinates) for rid, r in city.routes.items()}
        if city is not None
        else {}
    )
    return TripSummaries(
        projection_for(city),
        LocalClock(city_timezone(cfg.timezone, city)),
        routes,
        model_vehicle_routes(city) if city is not None else None,
        cfg.vehicle,
    )
