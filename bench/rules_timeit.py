"""Throughput of ``Engine.process`` with every rule, on synthetic readings of a generated city.

Readings follow the city model's devices and intervals (lamps 300 s, bins 900 s, vehicles
10 s along their routes, dust 60 s) over ~12 h from dusk, so night, dawn and day rules all
run. Prints readings/s (CPU time) with all rules and with every rule disabled (the engine's
own cost: detectors, line protocol), cold (first records) and warm (the next ones), and the
rule stage alone (rules + alert manager, as the engine dispatches them).

Example:
    $ .venv/bin/python bench/rules_timeit.py --records 100000
"""

from __future__ import annotations

import argparse
import heapq
import random
import time
from typing import Any

import shapely

from citywatch.citymodel import CityModel
from processors.config import RulesConfig
from processors.engine import Engine
from processors.rules.registry import RULES

NS = 1_000_000_000


def records(city: CityModel, n: int, start_s: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    lines = {rid: shapely.LineString(city.line_xy(r.line)) for rid, r in city.routes.items()}
    heap: list[tuple[int, str]] = []
    for d in city.devices.values():
        heapq.heappush(heap, (start_s * NS + rng.randrange(d.interval_s * NS), d.id))
    out: list[dict[str, Any]] = []
    fill: dict[str, float] = {}
    while len(out) < n:
        ts, dev_id = heapq.heappop(heap)
        d = city.devices[dev_id]
        heapq.heappush(heap, (ts + d.interval_s * NS, dev_id))
        rec: dict[str, Any] = {
            "device_id": d.id,
            "family": d.family,
            "district": d.district,
            "ts": ts,
            "received_at": ts,
            "late": False,
        }
        if d.family == "streetlight":
            exp = city.lamp_expected(d.id, ts / NS)
            p = (d.nominal_power_w or 100.0) * exp.dimming_pct / 100.0 * rng.uniform(0.97, 1.03)
            rec.update(
                power_state=exp.state,
                dimming_pct=float(exp.dimming_pct),
                power_w=p,
                voltage_v=rng.uniform(225, 235),
                current_a=p / 230.0,
                power_factor=0.95,
                circuit_id=d.circuit_id,
                cabinet_id=d.cabinet_id,
            )
        elif d.family == "bin":
            f = fill[d.id] = (fill.get(d.id, rng.random() * 0.5) + 0.01) % 0.95
            rec.update(fill_ratio=f, temperature_c=rng.uniform(18, 24), tilt_deg=2.0, battery_v=3.6)
        elif d.family == "vehicle":
            line = lines[d.route_id or ""]
            x, y = shapely.get_coordinates(line.interpolate((ts / NS * 8.3) % line.length))[0]
            lat, lon = city.to_latlon(float(x) + rng.uniform(-5, 5), float(y))
            rec.update(
                lat=lat,
                lon=lon,
                speed_kmh=30.0,
                ignition=True,
                odometer_km=ts / NS * 0.0083,
                vehicle_kind=d.vehicle_kind,
                route_id=d.route_id,
                payload_state="loaded",
            )
        else:
            rec.update(
                pm10_ugm3=rng.uniform(30, 60),
                pm25_ugm3=rng.uniform(10, 30),
                noise_dba=rng.uniform(40, 50),
                wind_ms=2.0,
                site_id=d.site_id,
            )
        out.append(rec)
    return out


def run(
    cfg: RulesConfig,
    city: CityModel,
    warm: list[dict[str, Any]],
    recs: list[dict[str, Any]],
    batch: int,
) -> tuple[float, float]:
    """(cold, warm) readings/s: the first records, then the next ones on the same engine
    (caches of cells, sun tables and per-device state filled, as in a long-running process)."""
    eng = Engine(cfg, city)
    rates = []
    for part in (warm, recs):
        cpu = time.process_time()  # CPU time: other processes on the machine do not count
        for i in range(0, len(part), batch):
            eng.process(part[i : i + batch])
        rates.append(len(part) / (time.process_time() - cpu))
    return rates[0], rates[1]


def rules_only(city: CityModel, warm: list[dict[str, Any]], recs: list[dict[str, Any]]) -> float:
    """readings/s of the rule stage alone: the engine's dispatch and the alert manager,
    without detectors or line protocol."""
    eng = Engine(RulesConfig(), city)
    by_family, conds, am = eng.by_family, eng._conds, eng.alerts
    rate = 0.0
    for part in (warm, recs):
        cpu = time.process_time()
        for rec in part:
            for rule in by_family[rec["family"]]:
                rule.on_reading(rec, conds)
            if conds:
                for c in conds:
                    am.apply(c)
                conds.clear()
        rate = len(part) / (time.process_time() - cpu)
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--scale", type=int, default=1)
    a = ap.parse_args()
    city = CityModel.generate(seed=1, scale=a.scale)
    start = 1717243200 - 3600  # 2024-06-01 11:00 UTC, 19:00 local: dusk
    both = records(city, 2 * a.records, start)
    warm, recs = both[: a.records], both[a.records :]
    fam: dict[str, int] = {}
    for r in recs:
        fam[r["family"]] = fam.get(r["family"], 0) + 1
    span = (recs[-1]["ts"] - recs[0]["ts"]) / NS / 3600
    print(f"{len(recs)} timed readings {fam}, span {span:.1f} h (after {len(warm)} warm-up)")
    none = RulesConfig(disabled_rules=list(RULES))
    base = run(none, city, warm, recs, a.batch)
    full = run(RulesConfig(), city, warm, recs, a.batch)
    for label, i in (("cold", 0), ("warm", 1)):
        print(
            f"{label}: engine without rules {base[i]:,.0f} readings/s; with all {len(RULES)} "
            f"rules {full[i]:,.0f} readings/s (rules: {1e6 / full[i] - 1e6 / base[i]:.1f} "
            "µs/reading)"
        )
    only = rules_only(city, warm, recs)
    print(f"rule stage alone (warm): {only:,.0f} readings/s ({1e6 / only:.1f} µs/reading)")


if __name__ == "__main__":
    main()
