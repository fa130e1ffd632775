"""Construction-site dust and noise monitors: working-hours cycles, weather days, noise.

PM10 = (site background × the district's weather of the day + the working-hours increment)
× a per-sensor factor × 5 % noise; PM2.5 ≈ 0.42 × PM10, TSP ≈ 1.7 × PM10. Work runs
08:00-18:00 local Monday to Saturday (ramping over 30 min); weather days are rainy (× 0.6),
normal or dry and windy (× 1.3) per district and local day, blended from noon to noon.
Normal values stay below ~120 µg/m³, far from the 150 µg/m³ limit, and never repeat
exactly (no clipping). Noise is
64-70 dBA while working, ~50 dBA in the evening and ~45 dBA at night (limit 55).
Reports every 60 s.

Faults: site-wide ``dust_exceedance`` (PM10 at 1.5-2.1 × the limit on every sensor) and
``night_noise`` (61-68 dBA at night); per sensor ``stuck_sensor`` (PM10 frozen at one exact
value), ``sensor_drift`` (PM10 + 60-80 µg/m³, reached over 10 min: clear of its
district, yet not enough to lift its site's mean over the limit) and ``device_silence``.

Example:
    >>> from citywatch.citymodel import CityModel
    >>> from ingest.simulator.config import SimConfig
    >>> from ingest.simulator.context import SimContext
    >>> ctx = SimContext.build(CityModel.generate(1, 1), SimConfig(sim_seconds=600), 1.7e9)
    >>> dust, out = Dust(ctx), []
    >>> for t in range(1_700_000_000, 1_700_000_060):
    ...     dust.emit(t, out)
    >>> len(out) == len(ctx.city.devices_in("central", "dust"))
    True
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from citywatch.citymodel import Device, hhmm_seconds
from ingest.simulator.context import SimContext
from ingest.simulator.formats import Message, encode
from ingest.simulator.truth import Fault


@dataclass(slots=True)
class _Site:
    id: str
    district: str
    base: float
    work_noise: float
    limit: float
    work_from: int
    work_to: int
    faults: list[Fault]


@dataclass(slots=True)
class _Sensor:
    dev: Device
    site: _Site
    factor: float
    faults: list[Fault]
    seq: int = 0


class Dust:
    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        city = ctx.city
        self.rng = ctx.rng("dust")
        self.interval = city.intervals_s["dust"]
        self.buckets: list[list[_Sensor]] = [[] for _ in range(self.interval)]
        self._weather: dict[tuple[str, int], tuple[float, float]] = {}
        for sid, site in city.sites.items():
            s = _Site(
                sid,
                site.district,
                self.rng.uniform(30.0, 45.0),
                self.rng.uniform(64.0, 70.0),
                site.pm10_limit_ugm3,
                hhmm_seconds(site.working_from),
                hhmm_seconds(site.working_to),
                ctx.faults(sid),
            )
            for dev_id in site.sensor_ids:
                sensor = _Sensor(
                    city.devices[dev_id], s, self.rng.uniform(0.95, 1.05), ctx.faults(dev_id)
                )
                self.buckets[ctx.phase(dev_id, self.interval)].append(sensor)

    def weather(self, district: str, t: float) -> tuple[float, float]:
        """(PM factor, wind m/s) at ``t``: each local day's weather holds at its noon and
        blends linearly into the next, so no sensor sees a step at midnight."""
        city = self.ctx.city
        x = (t + city.utc_offset_minutes * 60 - 43200) / 86400  # days since a local noon
        day = math.floor(x)
        f = x - day
        (p0, w0), (p1, w1) = self.weather_of(district, day), self.weather_of(district, day + 1)
        return p0 + (p1 - p0) * f, w0 + (w1 - w0) * f

    def weather_of(self, district: str, day: int) -> tuple[float, float]:
        """(PM factor, mean wind m/s) of a district's day (days since the epoch, local)."""
        key = (district, day)
        w = self._weather.get(key)
        if w is None:
            r = random.Random(f"citywatch-weather:{self.ctx.cfg.seed}:{district}:{day}")
            w = r.choice([(0.6, 4.5), (1.0, 2.5), (1.0, 3.0), (1.3, 5.5)])
            self._weather[key] = w
        return w

    def work(self, site: _Site, t: float) -> float:
        """Working-hours share 0..1 (ramps over 30 min; Sundays off)."""
        city = self.ctx.city
        weekday = (city.local_day(t) + 6) % 7  # proleptic ordinal 1 = Monday
        if weekday == 6:
            return 0.0
        sod = city.local_seconds(t)
        ramp = 1800.0
        return max(0.0, min(1.0, (sod - site.work_from) / ramp, (site.work_to - sod) / ramp))

    def emit(self, t: int, out: list[Message]) -> None:
        for sensor in self.buckets[t % self.interval]:
            msg = self.report(sensor, t)
            if msg is not None:
                out.append(msg)

    def report(self, s: _Sensor, t: int) -> Message | None:
        rng, city, site = self.rng, self.ctx.city, s.site
        fault = SimContext.active(s.faults, t)
        site_fault = SimContext.active(site.faults, t)
        if fault is not None and fault.kind == "device_silence":
            fault.mark()
            return None
        weather, wind = self.weather(site.district, t)
        work = self.work(site, t)
        pm10 = (site.base * weather + 30.0 * work) * s.factor * (1.0 + rng.gauss(0.0, 0.05))
        sod = city.local_seconds(t)
        if work > 0.0:
            noise = 50.0 + (site.work_noise - 50.0) * work + rng.gauss(0.0, 2.0)
        elif 6 * 3600 <= sod < 22 * 3600:
            noise = 50.0 + rng.gauss(0.0, 1.5)
        else:
            noise = 45.0 + rng.gauss(0.0, 1.5)
        if site_fault is not None:
            if site_fault.kind == "dust_exceedance":
                pm10 = site.limit * float(site_fault.params["level"]) * (1 + rng.gauss(0, 0.05))
            else:
                noise = float(site_fault.params["level"]) + rng.gauss(0.0, 1.2)
            site_fault.mark()
        if fault is not None:
            if fault.kind == "stuck_sensor":
                pm10 = float(fault.params.setdefault("value", round(pm10, 1)))
            elif fault.kind == "sensor_drift":
                ramp = min(1.0, (t - fault.start) / float(fault.params["ramp_s"]))
                pm10 += float(fault.params["offset"]) * ramp
            fault.mark()
        fields: dict[str, Any] = {
            "pm25_ugm3": round(pm10 * (0.42 + rng.gauss(0.0, 0.02)), 1),
            "pm10_ugm3": round(pm10, 1),
            "tsp_ugm3": round(pm10 * (1.7 + rng.gauss(0.0, 0.05)), 1),
            "noise_dba": round(noise, 1),
            "wind_ms": round(max(0.0, wind + rng.gauss(0.0, 0.6)), 1),
            "site_id": site.id,
        }
        s.seq += 1
        ts = self.ctx.device_ts(s.dev.id, t)
        payload = encode(s.dev.payload_format, s.dev.id, ts, s.seq, fields)
        return self.ctx.message(t, s.dev, payload, ((s.dev.id, s.seq),))
