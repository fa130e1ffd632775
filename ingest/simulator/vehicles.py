"""City vehicles: shifts, speeds and stops along their routes; muck trucks haul.

Each vehicle loops its route (a closed LineString from its depot) while in shift, departing
a few minutes after the shift starts and parking (ignition off) at the depot when the next
loop would not end inside the shift. Garbage trucks stop every 250-400 m to collect,
sweepers crawl at ~12 km/h, muck trucks cruise at ~35 km/h with short traffic stops, load
at their construction site (6-8 min, empty until they leave) and tip at the disposal site
(5-7 min, loaded until done). Trucks whose route enters the no-haul zone work only at night.
A GPS fix (3 m noise) is reported every 10 s, parked or not.

Faults (truth measured from the emitted fixes, exactly as a detector would see them):
``corridor_violation`` (a 500 m detour along a parallel street, off the buffered route),
``illegal_dump`` (a loaded truck stops 13-18 min away from disposal sites and depots and
leaves empty), ``daytime_hauling`` (a night-only truck makes one trip in banned hours),
``gps_jump`` (one fix 3-8 km off) and ``device_silence``.

Example:
    >>> from citywatch.citymodel import CityModel
    >>> from ingest.simulator.config import SimConfig
    >>> from ingest.simulator.context import SimContext
    >>> ctx = SimContext.build(CityModel.generate(1, 1), SimConfig(sim_seconds=600), 1.7e9)
    >>> fleet, out = Vehicles(ctx), []
    >>> for t in range(1_700_000_000, 1_700_000_010):
    ...     fleet.emit(t, out)
    >>> len(out) == len(ctx.city.vehicles)
    True
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Final

from citywatch.citymodel import M_PER_DEG, Device, Vehicle, hhmm_seconds
from ingest.simulator.context import SimContext
from ingest.simulator.formats import Message, encode
from ingest.simulator.truth import Fault

XY = tuple[float, float]
CRUISE_KMH: Final[dict[str, float]] = {"sanitation": 12.0, "garbage": 24.0, "muck": 35.0}
GPS_SIGMA_M: Final = 3.0
PARKED, DRIVING, STOPPED, DETOUR = "parked", "driving", "stopped", "detour"


def _window(start: str, end: str) -> tuple[int, int]:
    a, b = hhmm_seconds(start), hhmm_seconds(end)
    return a, b if b > a else b + 86400


class Path:
    """A polyline in local metres, addressed by distance along it."""

    def __init__(self, pts: list[XY]) -> None:
        self.pts = pts
        self.cum = [0.0]
        for a, b in itertools.pairwise(pts):
            self.cum.append(self.cum[-1] + math.dist(a, b))
        self.length = self.cum[-1]

    def segment(self, s: float) -> int:
        i = bisect.bisect_right(self.cum, s) - 1
        return max(0, min(i, len(self.pts) - 2))

    def at(self, s: float) -> tuple[float, float, float]:
        """(x, y, heading in degrees clockwise from north) at distance ``s``."""
        i = self.segment(s)
        (ax, ay), (bx, by) = self.pts[i], self.pts[i + 1]
        seg = self.cum[i + 1] - self.cum[i]
        f = 0.0 if seg <= 0 else (s - self.cum[i]) / seg
        heading = math.degrees(math.atan2(bx - ax, by - ay)) % 360.0
        return ax + (bx - ax) * f, ay + (by - ay) * f, heading

    def vertex_s(self, p: XY) -> float:
        """Distance along the path of the first vertex at ``p``."""
        for i, q in enumerate(self.pts):
            if math.dist(p, q) < 1.0:
                return self.cum[i]
        raise ValueError(f"{p} is not a vertex")


@dataclass(slots=True)
class _Stop:
    s: float
    duration: float
    action: str  # "", "load", "unload"


@dataclass(slots=True)
class _Truck:
    veh: Vehicle
    dev: Device
    path: Path
    stops: list[_Stop]
    loop_s: float  # expected loop time
    depart_delay: float
    faults: list[Fault]
    shifts: list[tuple[int, int]]  # local seconds of day; end may exceed 86400 (wraps)
    mode: str = PARKED
    s: float = 0.0
    stop_idx: int = 0
    stop_left: float = 0.0
    stop_action: str = ""
    payload: str = "empty"
    heading: float = 0.0
    speed: float = 0.0  # m/s while driving
    odometer_m: float = 0.0
    last_t: float = 0.0
    early_trip: bool = False
    detour: Path | None = None
    detour_s: float = 0.0
    detour_resume: float = 0.0
    seq: int = 0
    dumping: Fault | None = None
    watch: list[Fault] = field(default_factory=list)


class Vehicles:
    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        city = ctx.city
        self.rng = ctx.rng("vehicles")
        self.interval = city.intervals_s["vehicle"]
        self.buckets: list[list[_Truck]] = [[] for _ in range(self.interval)]
        self.offset_s = city.utc_offset_minutes * 60
        # to_latlon, inlined: a fix is reported every 10 s by every vehicle.
        self.lat0, self.lon0 = city.latitude, city.longitude
        self.k_lat = 1.0 / M_PER_DEG
        self.k_lon = 1.0 / (M_PER_DEG * math.cos(math.radians(city.latitude)))
        self.centres: dict[str, XY] = {
            d.id: city.to_xy(d.lat, d.lon) for d in city.districts.values()
        }
        for veh in city.vehicles.values():
            route = city.routes[veh.route_id]
            path = Path(city.line_xy(route.line))
            stops = self._stops(veh, path)
            cruise = CRUISE_KMH[veh.kind] / 3.6
            loop_s = path.length / (cruise * 0.95) + sum(st.duration for st in stops)
            truck = _Truck(
                veh,
                city.devices[veh.id],
                path,
                stops,
                loop_s,
                self.rng.uniform(60.0, 600.0),
                ctx.faults(veh.id),
                [_window(sh.start, sh.end) for sh in veh.shifts],
                last_t=ctx.t0,
            )
            truck.heading = path.at(0.0)[2]
            self.buckets[ctx.phase(veh.id, self.interval)].append(truck)

    def _stops(self, veh: Vehicle, path: Path) -> list[_Stop]:
        rng, city = self.rng, self.ctx.city
        stops: list[_Stop] = []
        if veh.kind == "muck":
            route = city.routes[veh.route_id]
            assert route.site_id is not None and route.disposal_site_id is not None
            site = city.sites[route.site_id]
            site_s = path.vertex_s(city.to_xy(site.lat, site.lon))
            disposal = city.polygon_xy(city.disposal_sites[route.disposal_site_id].area)
            cx = sum(p[0] for p in disposal[:-1]) / 4
            cy = sum(p[1] for p in disposal[:-1]) / 4
            disp_s = path.vertex_s((cx, cy))
            stops += [
                _Stop(site_s, rng.uniform(360, 480), "load"),
                _Stop(disp_s, rng.uniform(300, 420), "unload"),
            ]
            s = 600.0
            while s < path.length - 300:
                if all(abs(s - st.s) > 300 for st in stops[:2]):
                    stops.append(_Stop(s, rng.uniform(20, 50), ""))
                s += rng.uniform(900, 1600)
        else:
            gap = (250, 400) if veh.kind == "garbage" else (700, 1100)
            dwell = (30, 70) if veh.kind == "garbage" else (20, 40)
            s = rng.uniform(*gap)
            while s < path.length - 200:
                stops.append(_Stop(s, rng.uniform(*dwell), ""))
                s += rng.uniform(*gap)
        stops.sort(key=lambda st: st.s)
        return stops

    def emit(self, t: int, out: list[Message]) -> None:
        for truck in self.buckets[t % self.interval]:
            msg = self.report(truck, t)
            if msg is not None:
                out.append(msg)

    # -- motion --------------------------------------------------------------------------
    def _in_shift(self, tr: _Truck, t: float) -> bool:
        sod = (t + self.offset_s) % 86400
        return any(a <= sod < b or a <= sod + 86400 < b for a, b in tr.shifts)

    def _wants_to_drive(self, tr: _Truck, t: float) -> bool:
        if tr.early_trip:
            return True
        return self._in_shift(tr, t - tr.depart_delay) and self._in_shift(tr, t + tr.loop_s)

    def _start_loop(self, tr: _Truck) -> None:
        tr.mode, tr.s, tr.stop_idx, tr.payload = DRIVING, 0.0, 0, "empty"

    def _advance(self, tr: _Truck, t: float) -> None:
        remaining = t - tr.last_t
        tr.last_t = t
        while remaining > 1e-9:
            if tr.mode == PARKED:
                trip = self._trigger(tr, "daytime_hauling", t)
                if trip is not None:
                    tr.early_trip = True
                if self._wants_to_drive(tr, t):
                    self._start_loop(tr)
                    continue
                return
            if tr.mode == STOPPED:
                use = min(remaining, tr.stop_left)
                tr.stop_left -= use
                remaining -= use
                if tr.stop_left <= 1e-9:
                    self._end_stop(tr)
                continue
            tr.speed = CRUISE_KMH[tr.veh.kind] / 3.6 * self.rng.uniform(0.85, 1.1)
            if tr.mode == DETOUR:
                assert tr.detour is not None
                step = tr.speed * remaining
                left = tr.detour.length - tr.detour_s
                if step < left:
                    tr.detour_s += step
                    tr.odometer_m += step
                    return
                tr.odometer_m += left
                remaining -= left / tr.speed
                tr.mode, tr.s, tr.detour = DRIVING, tr.detour_resume, None
                while tr.stop_idx < len(tr.stops) and tr.stops[tr.stop_idx].s < tr.s:
                    tr.stop_idx += 1
                continue
            self._maybe_misbehave(tr, t)
            if tr.mode != DRIVING:
                continue
            target = tr.stops[tr.stop_idx].s if tr.stop_idx < len(tr.stops) else tr.path.length
            step = tr.speed * remaining
            if step < target - tr.s:
                tr.s += step
                tr.odometer_m += step
                return
            tr.odometer_m += max(0.0, target - tr.s)
            remaining -= max(0.0, target - tr.s) / tr.speed
            tr.s = target
            if tr.stop_idx < len(tr.stops):
                stop = tr.stops[tr.stop_idx]
                tr.stop_idx += 1
                tr.mode, tr.stop_left, tr.stop_action = STOPPED, stop.duration, stop.action
                if stop.action == "unload" and tr.payload == "empty":
                    tr.stop_left = 60.0  # already dumped elsewhere: a short pass
                    tr.stop_action = ""
            elif self._wants_to_drive(tr, t) and not tr.early_trip:
                self._start_loop(tr)
            else:
                tr.mode, tr.early_trip, tr.s = PARKED, False, 0.0
                return

    def _end_stop(self, tr: _Truck) -> None:
        if tr.stop_action == "load":
            tr.payload = "loaded"
        elif tr.stop_action in ("unload", "dump"):
            tr.payload = "empty"
        tr.mode, tr.stop_action = DRIVING, ""

    def _trigger(self, tr: _Truck, kind: str, t: float) -> Fault | None:
        for f in tr.faults:
            if f.kind == kind and f.start <= t < f.end and f not in tr.watch:
                tr.watch.append(f)
                return f
        return None

    def _maybe_misbehave(self, tr: _Truck, t: float) -> None:
        for f in tr.faults:
            if not (f.start <= t < f.end) or f in tr.watch:
                continue
            x, y, _ = tr.path.at(tr.s)
            if f.kind == "illegal_dump" and tr.payload == "loaded":
                if self._clear_of_stops(tr, 200.0) and self._far_from_sites((x, y)):
                    tr.watch.append(f)
                    tr.mode, tr.stop_action = STOPPED, "dump"
                    tr.stop_left = float(f.params["stop_s"])
                    tr.dumping = f
                    return
            elif f.kind == "corridor_violation":
                detour = self._detour(tr, float(f.params["length_m"]), float(f.params["offset_m"]))
                if detour is not None:
                    tr.watch.append(f)
                    tr.detour, tr.detour_s = detour
                    tr.detour_resume = tr.s + float(f.params["length_m"])
                    tr.mode = DETOUR
                    return

    def _clear_of_stops(self, tr: _Truck, margin: float) -> bool:
        nxt = tr.stops[tr.stop_idx].s if tr.stop_idx < len(tr.stops) else tr.path.length
        prev = tr.stops[tr.stop_idx - 1].s if tr.stop_idx > 0 else 0.0
        return nxt - tr.s > margin and tr.s - prev > margin

    def _far_from_sites(self, xy: XY) -> bool:
        geo = self.ctx.city.geo
        return not any(geo.near(g, xy, 400.0) for g in ("disposal", "depot", "site"))

    def _detour(self, tr: _Truck, length: float, offset: float) -> tuple[Path, float] | None:
        """A detour starting here along a parallel street, if the route is straight enough."""
        path = tr.path
        i = path.segment(tr.s)
        seg_start, seg_end = path.cum[i], path.cum[i + 1]
        if tr.s - seg_start < 150 or seg_end - tr.s < length + 150:
            return None
        # Traffic stops inside the detour are skipped; loading/tipping ones must not be.
        end = tr.s + length + 50
        if any(st.action and tr.s <= st.s <= end for st in tr.stops) or end > path.length:
            return None
        (ax, ay), (bx, by) = path.pts[i], path.pts[i + 1]
        seg = seg_end - seg_start
        ux, uy = (bx - ax) / seg, (by - ay) / seg
        nx, ny = -uy, ux
        x0, y0, _ = path.at(tr.s)
        cx, cy = self.centres[tr.veh.district]
        if (cx - x0) * nx + (cy - y0) * ny < 0:  # turn towards the district centre
            nx, ny = -nx, -ny
        p1 = (x0 + nx * offset, y0 + ny * offset)
        p2 = (p1[0] + ux * length, p1[1] + uy * length)
        buffer = self.ctx.city.routes[tr.veh.route_id].corridor_buffer_m
        geo = self.ctx.city.geo
        steps = max(1, int(length // 25))
        for k in range(steps + 1):
            px, py = p1[0] + ux * length * k / steps, p1[1] + uy * length * k / steps
            if geo.route_distance(tr.veh.route_id, px, py) < buffer + 200.0:
                return None
        return Path([(x0, y0), p1, p2, (x0 + ux * length, y0 + uy * length)]), 0.0

    def position(self, tr: _Truck) -> tuple[float, float, float]:
        if tr.mode == DETOUR and tr.detour is not None:
            return tr.detour.at(tr.detour_s)
        return tr.path.at(tr.s)

    # -- reporting -----------------------------------------------------------------------
    def report(self, tr: _Truck, t: int) -> Message | None:
        rng = self.rng
        self._advance(tr, t)
        x, y, heading = self.position(tr)
        moving = tr.mode in (DRIVING, DETOUR)
        if moving:
            tr.heading = heading
        speed_kmh = tr.speed * 3.6 + rng.gauss(0.0, 0.8) if moving else abs(rng.gauss(0.0, 0.3))
        if tr.mode == PARKED:
            speed_kmh = 0.0
        self._observe(tr, t, (x, y), speed_kmh)
        fault = SimContext.active(tr.faults, t)
        if fault is not None and fault.kind == "device_silence":
            fault.mark()
            return None
        gx, gy = x + rng.gauss(0.0, GPS_SIGMA_M), y + rng.gauss(0.0, GPS_SIGMA_M)
        if fault is not None and fault.kind == "gps_jump" and t == int(fault.start):
            angle = math.radians(float(fault.params["angle"]))
            gx += math.sin(angle) * float(fault.params["jump_m"])
            gy += math.cos(angle) * float(fault.params["jump_m"])
            fault.mark()
        lat, lon = self.lat0 + gy * self.k_lat, self.lon0 + gx * self.k_lon
        fields: dict[str, Any] = {
            "lat": round(lat, 6),
            "lon": round(lon, 6),
            "speed_kmh": round(max(0.0, speed_kmh), 1),
            "heading_deg": round(tr.heading, 1) % 360.0,
            "ignition": tr.mode != PARKED,
            "odometer_km": round(tr.odometer_m / 1000.0, 3),
            "vehicle_kind": tr.veh.kind,
            "route_id": tr.veh.route_id,
        }
        if tr.veh.kind == "muck":
            fields["payload_state"] = tr.payload
        tr.seq += 1
        payload = encode(tr.dev.payload_format, tr.dev.id, t, tr.seq, fields)
        return self.ctx.message(t, tr.dev, payload, ((tr.dev.id, tr.seq),))

    def _observe(self, tr: _Truck, t: int, xy: XY, speed_kmh: float) -> None:
        """Measure the truth of the vehicle faults being acted out, from this fix."""
        city = self.ctx.city
        for f in tr.watch:
            if f.done:
                continue
            if f.kind == "illegal_dump":
                active = tr.dumping is f and tr.mode == STOPPED and tr.stop_action == "dump"
                f.observe(t, active, self.interval)
                if not active and f.truth_start is not None:
                    f.done = True
            elif f.kind == "corridor_violation":
                dist = city.geo.route_distance(tr.veh.route_id, *xy)
                outside = dist > city.routes[tr.veh.route_id].corridor_buffer_m
                f.observe(t, outside, self.interval)
                if not outside and f.truth_start is not None:
                    f.done = True
            elif f.kind == "daytime_hauling":
                in_zone = city.geo.find("zone", xy) is not None
                banned = city.is_banned_hour(t)
                f.observe(t, in_zone and speed_kmh > 5.0 and banned, self.interval)
                if not tr.early_trip or not banned:
                    f.done = True
