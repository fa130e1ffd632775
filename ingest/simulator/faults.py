"""The fault plan: which faults happen to which target when, placed so each is unambiguous.

For every kind of docs/faults.md the planner picks ``rate x eligible targets`` targets (at
least ``min_faults_per_kind``) and, per target, a start where the kind makes sense: lamp
faults at night, at least ``switch grace + 5 min`` from any scheduled switch (on, off,
dimming step); ``day_burn`` before dusk or after dawn; ``night_noise`` between 22:00 and 06:00;
``daytime_hauling`` in banned hours for trucks whose route enters the no-haul zone; muck
misbehaviour inside the truck's shift. Faults that a reading shows only at its periodic
report start on one (so delays are crisp); event-driven ones (lamps switching, bin alarms)
start at any second.

Separation: a reservation table keeps one fault per device at a time (with a guard of
several reporting intervals), at most two device faults per lamp circuit and none while a
circuit is out (so outage lamps never double as ``lamp_out``), and site-level dust faults
apart from sensor-level ones on the same site. Devices touched by no fault are "quiet":
only they get transport faults (clock skew, duplicates, out-of-order delivery).

Example:
    >>> from citywatch.citymodel import CityModel
    >>> from ingest.simulator.config import SimConfig
    >>> city = CityModel.generate(1, 1)
    >>> t0 = city.local_midnight(city.local_day(1.7e9)) + 16 * 3600
    >>> plan = plan_faults(city, SimConfig(), t0, t0 + 16 * 3600, lambda d, i: 0)
    >>> sorted({f.kind for f in plan.faults}) == sorted(CONTRACT_KINDS + ("clock_skew",))
    True
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from citywatch.citymodel import CityModel, Device, hhmm_seconds
from ingest.simulator.config import SimConfig
from ingest.simulator.truth import CONTRACT_KINDS, Fault

PhaseFn = Callable[[str, int], int]
Window = tuple[float, float, dict[str, float]]

MIN: Final = 60.0
# Distance kept from scheduled lamp switches: the processors' grace (1200 s) plus 5 min.
SWITCH_MARGIN_S: Final = 1500.0
# Lamps need this much steady lit time before a degradation (their baseline is learnt).
BASELINE_S: Final = 3600.0 + 300.0
GUARD_S: Final[dict[str, float]] = {
    "streetlight": 30 * MIN,
    "bin": 60 * MIN,
    "vehicle": 15 * MIN,
    "dust": 30 * MIN,
}
# device_silence lengths in reporting intervals (>= 6: detection takes 3).
SILENCE_INTERVALS: Final[dict[str, tuple[int, int]]] = {
    "streetlight": (6, 12),
    "bin": (6, 8),
    "vehicle": (12, 30),
    "dust": (10, 20),
}


def phase_of(seed: int, publisher_id: str, interval: int) -> int:
    """The second (mod interval) at which a publisher reports: stable per seed and id."""
    return zlib.crc32(f"{seed}:{publisher_id}".encode()) % interval


class Reservations:
    """Weighted busy intervals per key; a placement fits when every key stays <= capacity."""

    def __init__(self) -> None:
        self.busy: dict[str, list[tuple[float, float, int]]] = {}

    def load(self, key: str, a: float, b: float) -> int:
        return sum(w for s, e, w in self.busy.get(key, ()) if s < b and a < e)

    def fits(self, claims: list[tuple[str, int, int]], a: float, b: float) -> bool:
        return all(self.load(k, a, b) + w <= cap for k, w, cap in claims)

    def take(self, claims: list[tuple[str, int, int]], a: float, b: float) -> None:
        for k, w, _ in claims:
            self.busy.setdefault(k, []).append((a, b, w))


@dataclass
class FaultPlan:
    faults: list[Fault] = field(default_factory=list)
    wanted: dict[str, int] = field(default_factory=dict)
    by_target: dict[str, list[Fault]] = field(default_factory=dict)
    quiet: set[str] = field(default_factory=set)  # publisher ids with no fault at all

    def add(self, fault: Fault) -> None:
        self.faults.append(fault)
        self.by_target.setdefault(fault.target, []).append(fault)

    def placed(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.faults:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out


class Planner:
    def __init__(
        self, city: CityModel, cfg: SimConfig, t0: float, t1: float, phase: PhaseFn
    ) -> None:
        self.city, self.cfg, self.t0, self.t1 = city, cfg, t0, t1
        self.phase = phase
        self.rng = random.Random(f"citywatch-faults:{cfg.seed}")
        self.res = Reservations()
        self.plan = FaultPlan()
        self._lit_cache: dict[str, list[tuple[float, float, float]]] = {}
        self._eligible: dict[str, list[str]] | None = None

    # -- helpers -----------------------------------------------------------------------
    def uniform(self, lo: float, hi: float) -> float:
        return self.rng.uniform(lo, hi)

    def aligned(self, dev: Device, t: float) -> float:
        """The first report time of ``dev`` at or after ``t``."""
        interval = dev.interval_s
        ph = self.phase(dev.publisher_id, interval)
        k = -(-(t - ph) // interval)
        return float(k * interval + ph)

    def pick_in(self, lo: float, hi: float) -> float | None:
        return None if hi <= lo else float(int(self.uniform(lo, hi)))

    def lit_segments(self, circuit_id: str) -> list[tuple[float, float, float]]:
        """(prev switch, a, b): lit throughout [a, b], >= SWITCH_MARGIN_S from switches."""
        if circuit_id in self._lit_cache:
            return self._lit_cache[circuit_id]
        c = self.city
        switches = c.switch_times(circuit_id, self.t0 - 86400, self.t1 + 86400)
        segs = []
        for s0, s1 in itertools.pairwise(switches):
            if c.lamp_expected(circuit_id, (s0 + s1) / 2).lit:
                a, b = max(s0 + SWITCH_MARGIN_S, self.t0), min(s1 - SWITCH_MARGIN_S, self.t1)
                if b > a:
                    segs.append((s0, a, b))
        self._lit_cache[circuit_id] = segs
        return segs

    def daily_windows(self, start_hhmm: str, end_hhmm: str) -> list[tuple[float, float]]:
        """Occurrences of a local daily window (may wrap midnight) overlapping the run."""
        c = self.city
        a, b = hhmm_seconds(start_hhmm), hhmm_seconds(end_hhmm)
        if b <= a:
            b += 86400
        out = []
        for day in range(c.local_day(self.t0) - 1, c.local_day(self.t1) + 1):
            base = c.local_midnight(day)
            lo, hi = max(base + a, self.t0), min(base + b, self.t1)
            if hi > lo:
                out.append((lo, hi))
        return out

    def crosses_work_edge(self, sensor_id: str, a: float, b: float) -> bool:
        """Does [a, b] (plus 30 min) touch the site's working-hours ramps?"""
        site = self.city.sites[self.city.devices[sensor_id].site_id or ""]
        for edge in (site.working_from, site.working_to):
            ramp_lo = hhmm_seconds(edge) - 1800
            hhmm = f"{ramp_lo // 3600:02d}:{ramp_lo % 3600 // 60:02d}"
            for lo, hi in self.daily_windows(hhmm, edge):
                if lo - 1800 < b + 1800 and a < hi + 1800:
                    return True
        return False

    def silence_for(self, dev: Device) -> Window | None:
        lo, hi = SILENCE_INTERVALS[dev.family]
        dur = self.rng.randint(lo, hi) * dev.interval_s
        earliest = self.t0 + max(10 * MIN, 3 * dev.interval_s)
        start = self.pick_in(earliest, self.t1 - dur - 2 * dev.interval_s)
        if start is None:
            return None
        start = self.aligned(dev, start)
        return start, start + dur, {}

    # -- per-kind windows ------------------------------------------------------------------
    def window(self, kind: str, target: str) -> Window | None:
        c, u = self.city, self.uniform
        if kind in ("lamp_out", "lamp_degradation", "circuit_outage"):
            circuit = target if kind == "circuit_outage" else c.devices[target].circuit_id
            assert circuit is not None
            segs = self.lit_segments(circuit)
            if not segs:
                return None
            prev, a, b = self.rng.choice(segs)
            if kind == "lamp_degradation":
                dur = u(35, 60) * MIN
                start = self.pick_in(max(a, prev + BASELINE_S), b - dur)
                if start is None:
                    return None
                start = self.aligned(c.devices[target], start)
                factor = self.rng.choice([u(0.58, 0.7), u(1.3, 1.42)])
                return (start, start + dur, {"factor": factor}) if start + dur <= b else None
            dur = (u(20, 45) if kind == "lamp_out" else u(20, 50)) * MIN
            start = self.pick_in(a, b - dur)
            return None if start is None else (start, start + dur, {})
        if kind == "day_burn":
            return self.day_burn(target)
        if kind == "voltage_out_of_band":
            dur = u(20, 40) * MIN
            start = self.pick_in(self.t0 + 10 * MIN, self.t1 - dur)
            if start is None:
                return None
            start = self.aligned(c.devices[target], start)
            high = self.rng.random() < 0.5
            volts = u(248.0, 256.0) if high else u(186.0, 193.0)
            return start, start + dur, {"voltage": volts}
        if kind == "bin_overflow":
            dur = u(60, 180) * MIN
            start = self.pick_in(self.t0 + 45 * MIN, self.t1 - dur)
            if start is None:
                return None
            start = self.aligned(c.devices[target], start)
            return start, start + dur, {}
        if kind == "bin_fire":
            dur = u(20, 50) * MIN
            start = self.pick_in(self.t0 + 75 * MIN, self.t1 - dur)
            return None if start is None else (start, start + dur, {"temp": u(65, 95)})
        if kind == "bin_knocked_over":
            dur = u(60, 150) * MIN
            start = self.pick_in(self.t0 + 20 * MIN, self.t1 - dur)
            return None if start is None else (start, start + dur, {"tilt": u(70, 95)})
        if kind == "gps_jump":
            start = self.pick_in(self.t0 + 5 * MIN, self.t1 - 5 * MIN)
            if start is None:
                return None
            start = self.aligned(c.devices[target], start)
            return start, start + 10.0, {"jump_m": u(3000, 8000), "angle": u(0, 360)}
        if kind in ("illegal_dump", "corridor_violation"):
            windows = [
                w for s in c.vehicles[target].shifts for w in self.daily_windows(s.start, s.end)
            ]
            # The truck must still start a loop (and so get loaded) after the trigger.
            windows = [(a + 5 * MIN, b - 50 * MIN) for a, b in windows if b - a >= 55 * MIN]
            if not windows:
                return None
            a, b = self.rng.choice(windows)
            start = self.pick_in(max(a, self.t0 + 5 * MIN), b)
            if start is None:
                return None
            params = (
                {"stop_s": u(13, 18) * MIN}
                if kind == "illegal_dump"
                else {"length_m": u(900, 1500), "offset_m": 500.0}
            )
            return start, start + 90 * MIN, params
        if kind == "daytime_hauling":
            zone = next(iter(c.no_haul_zones.values()))
            windows = [
                (a + 5 * MIN, b - 75 * MIN)
                for a, b in self.daily_windows(zone.banned_from, zone.banned_to)
            ]
            windows = [(a, b) for a, b in windows if b > a]
            if not windows:
                return None
            a, b = self.rng.choice(windows)
            start = self.pick_in(a, b)
            if start is None or c.in_shift(target, start) or c.in_shift(target, start + 75 * MIN):
                return None
            return start, start + 90 * MIN, {}
        if kind in ("dust_exceedance", "night_noise"):
            if kind == "dust_exceedance":
                dur = u(65, 110) * MIN
                windows = [(self.t0 + 20 * MIN, self.t1 - dur)]
            else:
                dur = u(40, 90) * MIN
                site = c.sites[target]
                windows = [
                    (a + 20 * MIN, b - dur - 20 * MIN)
                    for a, b in self.daily_windows(site.night_from, site.night_to)
                ]
            windows = [(a, b) for a, b in windows if b > a]
            if not windows:
                return None
            a, b = self.rng.choice(windows)
            start = self.pick_in(a, b)
            if start is None:
                return None
            level = u(1.5, 2.1) if kind == "dust_exceedance" else u(61.0, 68.0)
            return start, start + dur, {"level": level}
        if kind in ("stuck_sensor", "sensor_drift"):
            dur = (u(20, 45) if kind == "stuck_sensor" else u(60, 100)) * MIN
            start = self.pick_in(self.t0 + 20 * MIN, self.t1 - dur)
            if start is None:
                return None
            start = self.aligned(c.devices[target], start)
            if kind == "stuck_sensor" and self.crosses_work_edge(target, start, start + dur):
                return None  # a frozen value left behind by a work ramp would look like drift
            params = {"offset": u(60, 80), "ramp_s": 10 * MIN} if kind == "sensor_drift" else {}
            return start, start + dur, params
        if kind == "device_silence":
            return self.silence_for(c.devices[target])
        raise ValueError(f"no window rule for {kind!r}")

    def day_burn(self, lamp_id: str) -> Window | None:
        c = self.city
        circuit = c.devices[lamp_id].circuit_id
        assert circuit is not None
        options: list[Window] = []
        for on, off in c.lit_intervals(circuit, self.t0 - 86400, self.t1 + 86400):
            # Evening: switched on 35-100 min early; the fault ends when the schedule agrees.
            lo = max(on - 100 * MIN, self.t0 + 5 * MIN)
            hi = min(on - SWITCH_MARGIN_S - 15 * MIN, self.t1 - 20 * MIN)
            if hi > lo and on <= self.t1:
                start = float(int(self.uniform(lo, hi)))
                options.append((start, on, {}))
            # Morning: fails to switch off at dawn, off again 45-90 min later.
            end = off + self.uniform(45, 90) * MIN
            if off >= self.t0 + 10 * MIN and end <= self.t1:
                options.append((float(int(off)) + 1, float(int(end)), {}))
        return self.rng.choice(options) if options else None

    # -- claims ------------------------------------------------------------------------
    def claims(self, kind: str, target: str) -> list[tuple[str, int, int]]:
        c = self.city
        if kind == "circuit_outage":
            return [(target, 2, 2)]
        if kind in ("dust_exceedance", "night_noise"):
            return [(target, 2, 2)]
        dev = c.devices[target]
        out = [(target, 1, 1)]
        if dev.circuit_id:
            out.append((dev.circuit_id, 1, 2))
        if dev.site_id:
            out.append((dev.site_id, 1, 2))
        return out

    def family_of(self, kind: str, target: str) -> tuple[str, str, str]:
        """(target_type, family, district)."""
        c = self.city
        if kind == "circuit_outage":
            return "circuit", "streetlight", c.circuits[target].district
        if kind in ("dust_exceedance", "night_noise"):
            return "site", "dust", c.sites[target].district
        dev = c.devices[target]
        return ("vehicle" if dev.family == "vehicle" else "device"), dev.family, dev.district

    def eligible(self, kind: str) -> list[str]:
        if self._eligible is None:
            self._eligible = self._eligible_table()
        return self._eligible[kind]

    def _eligible_table(self) -> dict[str, list[str]]:
        c = self.city
        fam: dict[str, list[str]] = {d: [] for d in ("streetlight", "bin", "vehicle", "dust")}
        for d in c.devices.values():
            fam[d.family].append(d.id)
        muck = [v.id for v in c.vehicles.values() if v.kind == "muck"]
        table: dict[str, list[str]] = {
            "lamp_out": fam["streetlight"],
            "day_burn": fam["streetlight"],
            "lamp_degradation": fam["streetlight"],
            "voltage_out_of_band": fam["streetlight"],
            "circuit_outage": list(c.circuits),
            "bin_overflow": fam["bin"],
            "bin_fire": fam["bin"],
            "bin_knocked_over": fam["bin"],
            "gps_jump": fam["vehicle"],
            "illegal_dump": muck,
            "corridor_violation": muck,
            "daytime_hauling": [
                v for v in muck if c.routes[c.vehicles[v].route_id].crosses_no_haul_zone
            ],
            "dust_exceedance": list(c.sites),
            "night_noise": list(c.sites),
            "stuck_sensor": fam["dust"],
            "sensor_drift": fam["dust"],
            "device_silence": list(c.devices),
        }
        return table

    # -- the plan ----------------------------------------------------------------------
    def place(self, kind: str) -> None:
        targets = list(self.eligible(kind))
        rate = self.cfg.rate(kind)
        if not targets or rate <= 0:
            self.plan.wanted[kind] = 0
            return
        wanted = min(len(targets), max(round(rate * len(targets)), self.cfg.min_faults_per_kind))
        self.plan.wanted[kind] = wanted
        self.rng.shuffle(targets)
        placed = 0
        tries = 0
        for target in targets:
            if placed >= wanted or tries > 20 * wanted + 200:
                break
            for _ in range(4):
                tries += 1
                w = self.window(kind, target)
                if w is None:
                    continue
                start, end, params = w
                ttype, family, district = self.family_of(kind, target)
                guard = GUARD_S[family]
                claims = self.claims(kind, target)
                if not self.res.fits(claims, start - guard, end + guard):
                    continue
                self.res.take(claims, start - guard, end + guard)
                fid = f"f{len(self.plan.faults) + 1:06d}"
                self.plan.add(Fault(fid, kind, target, ttype, family, district, start, end, params))
                placed += 1
                break

    def quiet_and_skew(self) -> None:
        c = self.city
        noisy: set[str] = set()
        for f in self.plan.faults:
            if f.target_type == "circuit":
                noisy.update(c.devices[d].publisher_id for d in c.circuits[f.target].lamp_ids)
            elif f.target_type == "site":
                noisy.update(c.sites[f.target].sensor_ids)
            else:
                noisy.add(c.devices[f.target].publisher_id)
        publishers = {d.publisher_id for d in c.devices.values()}
        self.plan.quiet = publishers - noisy
        # Clock skew: individual (non-vehicle, non-concentrator) quiet devices only; a
        # skew on a vehicle would look like a GPS jump, on a concentrator like many faults.
        skewable = sorted(
            d.id
            for d in c.devices.values()
            if d.id in self.plan.quiet and d.family != "vehicle" and d.concentrator_id is None
        )
        rate = self.cfg.clock_skew_rate
        if rate <= 0 or not skewable:
            return
        n = min(len(skewable), max(1, round(rate * len(skewable))))
        for dev_id in self.rng.sample(skewable, n):
            dur = self.uniform(20, 40) * MIN
            start = self.pick_in(self.t0 + 10 * MIN, self.t1 - dur)
            if start is None:
                continue
            dev = c.devices[dev_id]
            # Half-second skews never land on another reading's timestamp.
            skew = float(self.rng.randint(90, 240)) + 0.5
            self.plan.add(
                Fault(
                    f"f{len(self.plan.faults) + 1:06d}",
                    "clock_skew",
                    dev_id,
                    "device",
                    dev.family,
                    dev.district,
                    self.aligned(dev, start),
                    self.aligned(dev, start + dur),
                    {"skew_s": skew},
                )
            )


def plan_faults(city: CityModel, cfg: SimConfig, t0: float, t1: float, phase: PhaseFn) -> FaultPlan:
    """Place every contract kind, then clock skews on quiet devices."""
    planner = Planner(city, cfg, t0, t1, phase)
    # Scarce, window-bound kinds first so the common ones do not crowd them out.
    order = sorted(CONTRACT_KINDS, key=lambda k: (k == "device_silence", len(planner.eligible(k))))
    for kind in order:
        planner.place(kind)
    planner.quiet_and_skew()
    return planner.plan
