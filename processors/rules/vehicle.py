"""Vehicle rules: GPS jumps, overspeed, idling, and the muck-truck permit rules.

Positions are projected once per fix to local metres (equirectangular around the city
centre: a multiply and a subtract; under 0.3 % distance error within 20 km, and routes and
zones are projected the same way, so inside/outside tests are unaffected). Geometry tests use
shapely only for muck trucks, behind a bounding-box test and a per-cell cache (:class:`Area`):
most fixes are answered by one dict lookup.

Each rule that uses positions runs its own :class:`FixFilter` (deterministic, so they all
agree): a fix implying > 200 km/h from the last good fix (and > 300 m away) is a jump and is
dropped, so one bad fix can neither start nor break a corridor, dump or hauling streak.
Three mutually consistent "jumps" in a row mean the *previous* fix was the bad one: the
filter re-anchors.

- ``gps_jump`` (info, data quality): a dropped fix; clears with the next good one.
- ``overspeed`` (warning): reported speed above the limit for the vehicle kind (default
  60 km/h) for >= 3 consecutive fixes.
- ``idle_too_long`` (info): ignition on and speed < 1 km/h for > 20 min.
- ``corridor_violation`` (major, muck): >= 3 consecutive good fixes outside the route line
  buffered by 150 m (fixes inside a depot or approved disposal site do not count).
- ``illegal_dump`` (major, muck): loaded, stopped (< 3 km/h) in one place (within 100 m) for
  > 10 min outside approved disposal sites and depots; the stop is tracked by place, so a
  tracker that goes quiet while parked does not reset it.
- ``daytime_hauling`` (warning, muck): moving > 5 km/h inside the no-haul zone during the
  banned hours (local time, default 07:00-20:00), >= 3 fixes; stops in between neither
  count nor reset.

Example:
    >>> proj = LocalProjection(31.23, 121.47)
    >>> rule, out = GpsJump(proj), []
    >>> fixes = [(31.2300, 121.47), (31.2301, 121.47), (31.2800, 121.47), (31.2302, 121.47)]
    >>> for i, (lat, lon) in enumerate(fixes):
    ...     rule.on_reading({"device_id": "truck-1", "family": "vehicle", "district": "c",
    ...                      "ts": i * 10 * NS, "lat": lat, "lon": lon}, out)
    >>> [(c.kind, c.active, c.severity) for c in out]
    [('gps_jump', True, 'info'), ('gps_jump', False, 'info')]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import shapely
from shapely.geometry.base import BaseGeometry

from processors.config import RulesConfig, VehicleRulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.solar import LocalClock, city_location, city_timezone, in_window, parse_hhmm
from processors.rules.streak import EMIT_ON, NS, DeviceRule, Streak, StreakParams

EARTH_M = 6_371_008.8
OK = 1
JUMP = 0
STALE = -1


class LocalProjection:
    """lon/lat -> metres east/north of a centre (equirectangular)."""

    __slots__ = ("kx", "ky", "lat0", "lon0")

    def __init__(self, lat0: float, lon0: float) -> None:
        self.lat0, self.lon0 = lat0, lon0
        self.ky = EARTH_M * math.pi / 180.0
        self.kx = self.ky * math.cos(math.radians(lat0))

    def xy(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky

    def geom(self, g: BaseGeometry) -> BaseGeometry:
        """Project a shapely geometry in (lon, lat) order."""
        kx, ky, lon0, lat0 = self.kx, self.ky, self.lon0, self.lat0
        out: BaseGeometry = shapely.transform(g, lambda c: (c - (lon0, lat0)) * (kx, ky))
        return out


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_M * math.asin(min(1.0, math.sqrt(a)))


class Area:
    """Point-in-area for one geometry in local metres, O(1) for most points.

    Cells of ``cell_m`` are classified lazily (wholly inside, wholly outside, on the edge)
    with two prepared-geometry tests, then remembered; only edge cells call shapely per
    point. Trucks revisit the same streets, so the cache stays small and warm.
    """

    __slots__ = ("b0", "b1", "b2", "b3", "cell", "cells", "geom")

    def __init__(self, geom: BaseGeometry, cell_m: float = 25.0) -> None:
        self.geom = geom
        shapely.prepare(geom)
        self.b0, self.b1, self.b2, self.b3 = geom.bounds
        self.cell = cell_m
        self.cells: dict[int, int] = {}

    def contains(self, x: float, y: float) -> bool:
        if x < self.b0 or x > self.b2 or y < self.b1 or y > self.b3:
            return False
        ix, iy = int(x // self.cell), int(y // self.cell)
        key = ix * 4_194_304 + iy  # one int hashes faster than a tuple
        st = self.cells.get(key)
        if st is None:
            if len(self.cells) > 200_000:
                self.cells.clear()
            c = self.cell
            box = shapely.box(ix * c, iy * c, (ix + 1) * c, (iy + 1) * c)
            st = 1 if self.geom.contains(box) else 0 if not self.geom.intersects(box) else 2
            self.cells[key] = st
        if st == 2:
            return bool(shapely.contains_xy(self.geom, x, y))
        return st == 1


class Areas:
    """Any of several areas (depots and approved disposal sites)."""

    __slots__ = ("areas",)

    def __init__(self, geoms: Iterable[BaseGeometry]) -> None:
        self.areas = [Area(g) for g in geoms]

    def contains(self, x: float, y: float) -> bool:
        return any(a.contains(x, y) for a in self.areas)


class _Fix:
    __slots__ = ("rej", "rts", "rx", "ry", "speed", "ts", "x", "y")

    def __init__(self, ts: int, x: float, y: float) -> None:
        self.ts, self.x, self.y = ts, x, y
        self.rej = 0  # consecutive rejected fixes that agree with each other
        self.rts, self.rx, self.ry = 0, 0.0, 0.0
        self.speed = 0.0  # implied km/h of the last fix checked


class FixFilter:
    """Drops GPS jumps: the last good fix per vehicle, and the candidates that disagree."""

    __slots__ = ("fixes", "min_m", "reanchor", "vmax")

    def __init__(self, jump_kmh: float = 200.0, min_m: float = 300.0, reanchor: int = 3) -> None:
        self.vmax = jump_kmh / 3.6
        self.min_m = min_m
        self.reanchor = reanchor
        self.fixes: dict[str, _Fix] = {}

    def check(self, dev: str, ts: int, x: float, y: float) -> int:
        """OK (the fix is good and is now the reference), JUMP, or STALE (old/duplicate)."""
        f = self.fixes.get(dev)
        if f is None:
            self.fixes[dev] = _Fix(ts, x, y)
            return OK
        if ts <= f.ts:
            return STALE
        dt = (ts - f.ts) / NS
        dx, dy = x - f.x, y - f.y
        d2 = dx * dx + dy * dy
        lim = max(self.vmax * dt, self.min_m)
        f.speed = math.sqrt(d2) / dt * 3.6
        if d2 <= lim * lim:
            f.ts, f.x, f.y, f.rej = ts, x, y, 0
            return OK
        if f.rej:
            if ts <= f.rts:
                return STALE
            dtr = (ts - f.rts) / NS
            ex, ey = x - f.rx, y - f.ry
            limr = max(self.vmax * dtr, self.min_m)
            f.rej = f.rej + 1 if ex * ex + ey * ey <= limr * limr else 1
        else:
            f.rej = 1
        f.rts, f.rx, f.ry = ts, x, y
        if f.rej >= self.reanchor:
            f.ts, f.x, f.y, f.rej = ts, x, y, 0
            return OK
        return JUMP

    def speed(self, dev: str) -> float:
        f = self.fixes.get(dev)
        return f.speed if f is not None else 0.0


# --- rules --------------------------------------------------------------------------------


class _VehicleRule(DeviceRule):
    families: ClassVar[tuple[str, ...]] = ("vehicle",)
    kind: ClassVar[str]
    severity: ClassVar[str] = "warning"
    muck_only: ClassVar[bool] = False

    def __init__(
        self,
        proj: LocalProjection,
        cfg: VehicleRulesConfig | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        self.proj = proj
        self.cfg = c = cfg or VehicleRulesConfig()
        self.filter = FixFilter(c.jump_kmh, c.jump_min_m)
        self.state: dict[str, Streak] = {}
        self.hold_ns = int(hold_s * NS)
        self.repeat_ns = int(repeat_s * NS)
        self.p = self._params(*self._needs())

    def _needs(self) -> tuple[int, int]:
        """Readings in a row to raise, and to clear; one each unless a rule says otherwise."""
        return 1, 1

    def _params(self, need: int, clear_need: int) -> StreakParams:
        return StreakParams(
            need, clear_need, self.hold_ns, self.repeat_ns, int(self.cfg.max_gap_s * NS)
        )

    def _streak(self, dev: str) -> Streak:
        st = self.state.get(dev)
        if st is None:
            st = self.state[dev] = Streak()
        return st

    def _good_fix(self, rec: Record) -> tuple[float, float] | None:
        """The fix in metres if it is a good one (not a jump, not stale), else None."""
        lat, lon = rec.get("lat"), rec.get("lon")
        if lat is None or lon is None:
            return None
        x, y = self.proj.xy(lat, lon)
        if self.filter.check(rec["device_id"], rec["ts"], x, y) != OK:
            return None
        return x, y

    def _speed(self, rec: Record) -> float:
        v = rec.get("speed_kmh")
        return float(v) if v is not None else self.filter.speed(rec["device_id"])


class GpsJump(_VehicleRule):
    """A fix implying an impossible speed: dropped, reported as a data-quality event."""

    name: ClassVar[str] = "gps_jump"
    kind: ClassVar[str] = "gps_jump"
    severity: ClassVar[str] = "info"
    description: ClassVar[str] = "implied speed between fixes > 200 km/h"

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        lat, lon = rec.get("lat"), rec.get("lon")
        if lat is None or lon is None:
            return
        dev = rec["device_id"]
        x, y = self.proj.xy(lat, lon)
        v = self.filter.check(dev, rec["ts"], x, y)
        if v == STALE:
            return
        r = self._streak(dev).step(rec["ts"], v == JUMP, self.p)
        if r:
            speed = self.filter.speed(dev)
            self._emit(
                r,
                rec,
                out,
                f"fix implies {speed:.0f} km/h; dropped",
                speed,
                off_msg="fixes consistent again",
            )


class Overspeed(_VehicleRule):
    """Reported speed above the kind's limit for consecutive fixes."""

    name: ClassVar[str] = "overspeed"
    kind: ClassVar[str] = "overspeed"
    description: ClassVar[str] = "speed above the limit for the vehicle kind, >= 3 fixes"

    def _needs(self) -> tuple[int, int]:
        return self.cfg.overspeed_fixes, self.cfg.clear_fixes

    def __init__(
        self,
        proj: LocalProjection,
        cfg: VehicleRulesConfig | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        super().__init__(proj, cfg, hold_s, repeat_s)
        self.limits = dict(self.cfg.overspeed_kmh)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        v = rec.get("speed_kmh")
        limit = self.limits.get(rec.get("vehicle_kind", ""))
        if v is None or limit is None:
            return
        r = self._streak(rec["device_id"]).step(rec["ts"], v > limit, self.p)
        if r:
            self._emit(r, rec, out, f"{v:.0f} km/h over the {limit:.0f} km/h limit", v)


class _Idle:
    __slots__ = ("since", "streak")

    def __init__(self) -> None:
        self.since: int | None = None
        self.streak = Streak()


class IdleTooLong(_VehicleRule):
    """Engine running, not moving, for too long."""

    name: ClassVar[str] = "idle_too_long"
    kind: ClassVar[str] = "idle_too_long"
    severity: ClassVar[str] = "info"
    description: ClassVar[str] = "ignition on and speed ~0 for > 20 min"

    def __init__(
        self,
        proj: LocalProjection,
        cfg: VehicleRulesConfig | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        super().__init__(proj, cfg, hold_s, repeat_s)
        self.after_ns = int(self.cfg.idle_after_min * 60 * NS)
        self.max_gap_ns = int(self.cfg.max_gap_s * NS)
        self.idle: dict[str, _Idle] = {}

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        ign, v = rec.get("ignition"), rec.get("speed_kmh")
        if ign is None or v is None:
            return
        dev, ts = rec["device_id"], rec["ts"]
        st = self.idle.get(dev)
        if st is None:
            st = self.idle[dev] = _Idle()
        last = st.streak.last_ts
        if ts <= last:
            return
        if ign and v < self.cfg.idle_kmh:
            if st.since is None or ts - last > self.max_gap_ns:
                st.since = ts
            bad = ts - st.since > self.after_ns
        else:
            st.since = None
            bad = False
        r = st.streak.step(ts, bad, self.p)
        if r:
            mins = (ts - st.since) / (60 * NS) if st.since is not None else 0.0
            self._emit(r, rec, out, f"idling for {mins:.0f} min", mins)


class CorridorViolation(_VehicleRule):
    """A muck truck outside its permitted corridor (buffered route line)."""

    name: ClassVar[str] = "corridor_violation"
    kind: ClassVar[str] = "corridor_violation"
    severity: ClassVar[str] = "major"
    description: ClassVar[str] = ">= 3 consecutive fixes outside the route buffer (150 m)"

    def _needs(self) -> tuple[int, int]:
        return self.cfg.corridor_fixes, self.cfg.clear_fixes

    def __init__(
        self,
        proj: LocalProjection,
        routes: Mapping[str, BaseGeometry],
        cfg: VehicleRulesConfig | None = None,
        vehicle_route: Mapping[str, str] | None = None,
        sites: Iterable[BaseGeometry] = (),
        buffers_m: Mapping[str, float] | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        super().__init__(proj, cfg, hold_s, repeat_s)
        self.lines = {rid: proj.geom(g) for rid, g in routes.items()}
        self.buffers = {rid: (buffers_m or {}).get(rid, self.cfg.corridor_m) for rid in routes}
        self.corridors = {rid: Area(g.buffer(self.buffers[rid])) for rid, g in self.lines.items()}
        self.vehicle_route = dict(vehicle_route or {})
        self.sites = Areas(proj.geom(g) for g in sites)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        if rec.get("vehicle_kind") != "muck":
            return
        dev = rec["device_id"]
        rid: str | None = rec.get("route_id") or self.vehicle_route.get(dev)
        if rid is None:
            return
        corridor = self.corridors.get(rid)
        if corridor is None:
            return
        xy = self._good_fix(rec)
        if xy is None:
            return
        x, y = xy
        bad = not corridor.contains(x, y) and not self.sites.contains(x, y)
        r = self._streak(dev).step(rec["ts"], bad, self.p)
        if r == EMIT_ON:
            d = float(shapely.distance(self.lines[rid], shapely.Point(x, y)))
            self._emit(
                r, rec, out, f"{d:.0f} m off route {rid} (corridor {self.buffers[rid]:.0f} m)", d
            )
        elif r:
            self._emit(r, rec, out, "", off_msg="back in the corridor")


class _Stop:
    __slots__ = ("loaded", "outside", "payload", "since", "streak", "x", "y")

    def __init__(self) -> None:
        self.since: int | None = None
        self.x = self.y = 0.0
        self.loaded = False
        self.outside: bool | None = None  # cached site test for this stop
        self.payload: str | None = None  # last known payload_state
        self.streak = Streak()


class IllegalDump(_VehicleRule):
    """A loaded muck truck standing for long somewhere that is not a disposal site or depot."""

    name: ClassVar[str] = "illegal_dump"
    kind: ClassVar[str] = "illegal_dump"
    severity: ClassVar[str] = "major"
    description: ClassVar[str] = "loaded, stopped > 10 min outside disposal sites and depots"

    def __init__(
        self,
        proj: LocalProjection,
        sites: Iterable[BaseGeometry],
        cfg: VehicleRulesConfig | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        super().__init__(proj, cfg, hold_s, repeat_s)
        self.sites = Areas(proj.geom(g) for g in sites)
        self.after_ns = int(self.cfg.dump_after_min * 60 * NS)
        self.r2 = self.cfg.stop_radius_m**2
        self.stops: dict[str, _Stop] = {}

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        if rec.get("vehicle_kind") != "muck":
            return
        dev, ts = rec["device_id"], rec["ts"]
        st = self.stops.get(dev)
        if st is None:
            st = self.stops[dev] = _Stop()
        pl = rec.get("payload_state")
        if pl is not None and ts > st.streak.last_ts:
            st.payload = pl
        xy = self._good_fix(rec)
        if xy is None:
            return
        x, y = xy
        bad: bool | None = False
        if self._speed(rec) < self.cfg.dump_stop_kmh:
            if st.since is None or (x - st.x) ** 2 + (y - st.y) ** 2 > self.r2:
                st.since, st.x, st.y, st.outside = ts, x, y, None
                st.loaded = False
            # It may unload during the stop: loaded at any point of it is enough.
            st.loaded = st.loaded or st.payload == "loaded"
            bad = None
            if st.loaded and ts - st.since > self.after_ns:
                if st.outside is None:
                    st.outside = not self.sites.contains(st.x, st.y)
                bad = st.outside
        else:
            st.since = None
        r = st.streak.step(ts, bad, self.p)
        if r:
            mins = (ts - st.since) / (60 * NS) if st.since is not None else 0.0
            self._emit(
                r,
                rec,
                out,
                f"loaded and stopped {mins:.0f} min outside disposal sites and depots",
                mins,
                off_msg="moving again",
            )


class DaytimeHauling(_VehicleRule):
    """A muck truck driving inside the no-haul zone during the banned hours."""

    name: ClassVar[str] = "daytime_hauling"
    kind: ClassVar[str] = "daytime_hauling"
    description: ClassVar[str] = "moving > 5 km/h in the no-haul zone in banned hours, >= 3 fixes"

    def _needs(self) -> tuple[int, int]:
        return self.cfg.haul_fixes, self.cfg.clear_fixes

    def __init__(
        self,
        proj: LocalProjection,
        zones: Iterable[tuple[BaseGeometry, str | None, str | None]],
        clock: LocalClock,
        cfg: VehicleRulesConfig | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        """``zones``: (area in lon/lat, banned from, banned to); None = the configured hours."""
        super().__init__(proj, cfg, hold_s, repeat_s)
        self.clock = clock
        da, db = self.cfg.banned_hours
        self.zones = [
            (Area(proj.geom(g), 50.0), parse_hhmm(a or da), parse_hhmm(b or db))
            for g, a, b in zones
        ]

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        if rec.get("vehicle_kind") != "muck":
            return
        xy = self._good_fix(rec)
        if xy is None:
            return
        ts = rec["ts"]
        bad: bool | None = False
        m = self.clock.minute_of_day(ts)
        for area, a, b in self.zones:
            if in_window(m, a, b) and area.contains(*xy):
                bad = True if self._speed(rec) > self.cfg.haul_kmh else None
                break
        r = self._streak(rec["device_id"]).step(ts, bad, self.p)
        if r:
            self._emit(
                r,
                rec,
                out,
                "moving in the no-haul zone during banned hours",
                rec.get("speed_kmh"),
                off_msg="outside the zone or the banned hours",
            )


# --- wiring (registry factories) ----------------------------------------------------------


def projection_for(city: Any) -> LocalProjection:
    return LocalProjection(*city_location(city))


def _common(cfg: RulesConfig) -> dict[str, Any]:
    return {"cfg": cfg.vehicle, "hold_s": cfg.alerts.clear_after_s, "repeat_s": cfg.repeat_s}


def _poly(p: Any) -> BaseGeometry:
    return shapely.Polygon(p.coordinates[0])


def model_sites(city: Any) -> list[BaseGeometry]:
    """Approved disposal sites and depots (lon/lat polygons) of the city model."""
    return [_poly(s.area) for s in (*city.disposal_sites.values(), *city.depots.values())]


def model_vehicle_routes(city: Any) -> dict[str, str]:
    out = {v.id: v.route_id for v in city.vehicles.values()}
    out.update(
        {d.id: d.route_id for d in city.devices.values() if d.family == "vehicle" and d.route_id}
    )
    return out


def build_gps_jump(cfg: RulesConfig, city: Any) -> Rule:
    return GpsJump(projection_for(city), **_common(cfg))


def build_overspeed(cfg: RulesConfig, city: Any) -> Rule:
    return Overspeed(projection_for(city), **_common(cfg))


def build_idle(cfg: RulesConfig, city: Any) -> Rule:
    return IdleTooLong(projection_for(city), **_common(cfg))


def build_corridor(cfg: RulesConfig, city: Any) -> Rule | None:
    if city is None or not city.routes:
        return None
    muck = {rid: r for rid, r in city.routes.items() if r.vehicle_kind == "muck"}
    return CorridorViolation(
        projection_for(city),
        {rid: shapely.LineString(r.line.coordinates) for rid, r in muck.items()},
        vehicle_route=model_vehicle_routes(city),
        sites=model_sites(city),
        buffers_m={rid: r.corridor_buffer_m for rid, r in muck.items()},
        **_common(cfg),
    )


def build_illegal_dump(cfg: RulesConfig, city: Any) -> Rule | None:
    if city is None:
        return None
    return IllegalDump(projection_for(city), model_sites(city), **_common(cfg))


def build_daytime_hauling(cfg: RulesConfig, city: Any) -> Rule | None:
    if city is None or not city.no_haul_zones:
        return None
    zones = [(_poly(z.area), z.banned_from, z.banned_to) for z in city.no_haul_zones.values()]
    return DaytimeHauling(
        projection_for(city), zones, LocalClock(city_timezone(cfg.timezone, city)), **_common(cfg)
    )
