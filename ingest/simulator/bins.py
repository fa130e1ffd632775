"""Waste bins: fill curves by area type, collection rounds that empty them, alarms.

A bin fills at its own rate times a daily activity curve (busy 07:00-22:00, slow at night),
sized so that a normal bin never passes 0.85 between two collections of its round
(residential daily, commercial twice, market three times a day). At its round's time plus
its point's place in the round, the bin is emptied: an extra report with ``emptied: true``.
Temperature follows the ambient daily curve plus a small per-bin offset; tilt stays near 0;
the lid is occasionally open. Reports every 900 s; alarms (fire, tilt) report at once.

Faults: ``bin_overflow`` (collections skipped; the fill ramps slowly to 0.9 at the fault's
start and stays above it until a crew empties the bin at the end), ``bin_fire``
(65-95 °C), ``bin_knocked_over`` (tilt 70-95°) and ``device_silence``.

Example:
    >>> from citywatch.citymodel import CityModel
    >>> from ingest.simulator.config import SimConfig
    >>> from ingest.simulator.context import SimContext
    >>> ctx = SimContext.build(CityModel.generate(1, 1), SimConfig(sim_seconds=3600), 1.7e9)
    >>> bins, out = Bins(ctx), []
    >>> for t in range(1_700_000_000, 1_700_000_900):
    ...     bins.emit(t, out)
    >>> len(out) >= len(ctx.city.devices_in("central", "bin"))
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from citywatch.citymodel import Device, hhmm_seconds
from ingest.simulator.context import SimContext
from ingest.simulator.formats import Message, encode
from ingest.simulator.truth import Fault

RAMP_S: Final = 4 * 3600.0  # an overflowing bin climbs to 0.9 over 4 h (0.2/h at most)
NORMAL_CAP: Final = 0.85
# Longest gap between two collections of a round, hours: sizes the fill rates.
_GAP_H: Final[dict[str, float]] = {"residential": 24, "commercial": 15, "market": 12, "park": 24}


def activity(local_hour: float) -> float:
    """Relative waste production by local hour (mean ≈ 1 over a day)."""
    if 7 <= local_hour < 22:
        return 1.25
    return 0.4


@dataclass(slots=True)
class _Bin:
    dev: Device
    rate: float  # fill per hour at activity 1
    temp_off: float
    tilt0: float
    fill: float
    last_t: float
    collections: list[float]
    faults: list[Fault]
    overflow: Fault | None
    seq: int = 0


class Bins:
    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        city = ctx.city
        self.rng = ctx.rng("bins")
        self.interval = city.intervals_s["bin"]
        self.buckets: list[list[_Bin]] = [[] for _ in range(self.interval)]
        self.events: dict[int, dict[int, _Bin]] = {}
        self.collect_at: dict[tuple[int, int], bool] = {}
        for dev in city.devices.values():
            if dev.family != "bin":
                continue
            assert dev.area_type is not None and dev.collection_point_id is not None
            point = city.collection_points[dev.collection_point_id]
            rnd = city.collection_rounds[point.round_id]
            offset = rnd.point_ids.index(point.id) * rnd.minutes_per_point * 60.0
            offset += point.bin_ids.index(dev.id) * 10.0
            times = []
            for day in range(city.local_day(ctx.t0) - 2, city.local_day(ctx.t1) + 1):
                for hhmm in rnd.times_local:
                    times.append(city.local_midnight(day) + hhmm_seconds(hhmm) + offset)
            times.sort()
            rate = self.rng.uniform(0.5, 0.8) * 0.8 / _GAP_H[dev.area_type]
            last = max((t for t in times if t <= ctx.t0), default=ctx.t0 - 12 * 3600)
            faults = ctx.faults(dev.id)
            overflow = next((f for f in faults if f.kind == "bin_overflow"), None)
            b = _Bin(
                dev,
                rate,
                self.rng.uniform(0.5, 2.5),
                self.rng.uniform(0.0, 4.0),
                min(NORMAL_CAP, 0.02 + rate * (ctx.t0 - last) / 3600.0 * 0.9),
                ctx.t0,
                [t for t in times if ctx.t0 <= t < ctx.t1 and not self._skipped(overflow, t)],
                faults,
                overflow,
            )
            self.buckets[ctx.phase(dev.id, self.interval)].append(b)
            for t in b.collections:
                self._event(t, b)
                self.collect_at[(id(b), math.ceil(t))] = True
            for f in faults:
                if f.kind in ("bin_fire", "bin_knocked_over"):
                    self._event(f.start, b)
                    self._event(f.end, b)
                elif f.kind == "bin_overflow":
                    # The crew that finally comes empties it: the fault's end.
                    self._event(f.end, b)
                    self.collect_at[(id(b), math.ceil(f.end))] = True

    @staticmethod
    def _skipped(overflow: Fault | None, t: float) -> bool:
        return overflow is not None and overflow.start - RAMP_S <= t <= overflow.end

    def _event(self, t: float, b: _Bin) -> None:
        self.events.setdefault(math.ceil(t), {})[id(b)] = b

    def emit(self, t: int, out: list[Message]) -> None:
        due = self.buckets[t % self.interval]
        extra = self.events.pop(t, None)
        if extra:
            for b in due:
                extra.pop(id(b), None)
            due = due + list(extra.values())
        for b in due:
            msg = self.report(b, t)
            if msg is not None:
                out.append(msg)

    def ambient(self, t: float) -> float:
        hour = self.ctx.city.local_seconds(t) / 3600.0
        return 12.0 + 6.0 * math.sin(2 * math.pi * (hour - 9.0) / 24.0)

    def report(self, b: _Bin, t: int) -> Message | None:
        rng = self.rng
        hour = self.ctx.city.local_seconds(t) / 3600.0
        b.fill = min(NORMAL_CAP, b.fill + b.rate * activity(hour) * (t - b.last_t) / 3600.0)
        b.last_t = t
        fault = SimContext.active(b.faults, t)
        emptied = self.collect_at.pop((id(b), t), False)
        if emptied:
            b.fill = rng.uniform(0.01, 0.04)
        fill = b.fill
        ov = b.overflow
        if ov is not None and not emptied:
            if ov.start - RAMP_S <= t < ov.start:
                fill = max(fill, min(0.88, 0.9 - 0.2 * (ov.start - t) / 3600.0))
            elif ov.start <= t < ov.end:
                fill = min(1.0, 0.905 + 0.02 * (t - ov.start) / 3600.0 + abs(rng.gauss(0, 0.003)))
            b.fill = min(fill, NORMAL_CAP) if t < ov.start else fill
        if fault is not None and fault.kind == "device_silence":
            fault.mark()
            return None
        temp = self.ambient(t) + b.temp_off + rng.gauss(0.0, 0.3)
        tilt = b.tilt0 + abs(rng.gauss(0.0, 0.3))
        if fault is not None:
            if fault.kind == "bin_fire":
                temp = float(fault.params["temp"]) + rng.gauss(0.0, 2.0)
            elif fault.kind == "bin_knocked_over":
                tilt = float(fault.params["tilt"]) + rng.gauss(0.0, 1.5)
            fault.mark()
        reported = fill if fill >= 0.9 else max(0.0, fill + rng.gauss(0.0, 0.004))
        fields: dict[str, Any] = {
            "fill_ratio": round(min(reported, 1.0), 3),
            "temperature_c": round(temp, 1),
            "tilt_deg": round(min(tilt, 180.0), 1),
            "lid_open": rng.random() < 0.03,
            "battery_v": round(3.6 - (t - self.ctx.t0) / 3.6e7 + rng.gauss(0.0, 0.003), 3),
        }
        if emptied:
            fields["emptied"] = True
        b.seq += 1
        ts = self.ctx.device_ts(b.dev.id, t)
        payload = encode(b.dev.payload_format, b.dev.id, ts, b.seq, fields)
        return self.ctx.message(t, b.dev, payload, ((b.dev.id, b.seq),))
