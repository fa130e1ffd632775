"""Anomalies the sentinel detector stores on calm municipal routines, per series-week.

Synthetic series with nothing wrong in them, eight weeks each, five seeds:

* a building site's dust sensor: 80 µg/m³ while work goes on (weekdays 07:00-18:00), 25 at
  night and at weekends, Gaussian noise σ 6; with ``jitter`` work starts up to 15 minutes
  early or late and stops up to 30;
* a smart bin's fill level: a daily cycle, 15 points higher at weekends, noise σ 3.

Each is read every minute (the dust sensors' interval) and every 5 minutes, and scored by
the detector as it was (records decaying per point, no routine check), with the records
decaying per time only, and as it is. Every anomaly here is a false one.

Example:
    $ .venv/bin/python -m bench.routines
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Iterator
from typing import Any

from processors.detectors.ewma import DAY
from processors.detectors.sentinel import Sentinel

WEEKS = 8
SEEDS = 5
#: A Monday, 00:00 UTC: the series' weeks start on Mondays.
MONDAY = 1_700_438_400.0

VARIANTS: dict[str, dict[str, Any]] = {
    "records decay per point (before)": {"routine_tolerance": 0.0, "decay_interval": 1e-9},
    "per 5 minutes of time": {"routine_tolerance": 0.0},
    "and weekly routines (now)": {},
}


def series(kind: str, step: float, seed: int, jitter: bool) -> Iterator[tuple[float, float]]:
    """(time, value) of one calm series: ``kind`` is ``site`` or ``bin``."""
    rnd = random.Random(seed)
    shifts: dict[int, tuple[float, float]] = {}
    for i in range(int(WEEKS * 7 * DAY / step)):
        t = MONDAY + i * step
        day = int((t - MONDAY) // DAY)
        weekday, hour = day % 7, (t % DAY) / 3600
        if day not in shifts:
            shifts[day] = (rnd.uniform(-0.25, 0.25), rnd.uniform(-0.5, 0.5)) if jitter else (0, 0)
        if kind == "site":
            start, stop = shifts[day]
            working = weekday < 5 and 7 + start <= hour < 18 + stop
            yield t, (80.0 if working else 25.0) + rnd.gauss(0.0, 6.0)
        else:
            weekend = 15.0 if weekday >= 5 else 0.0
            yield t, 40 + 30 * math.sin(2 * math.pi * hour / 24) + weekend + rnd.gauss(0.0, 3.0)


def anomalies_per_week(kind: str, step: float, jitter: bool, params: dict[str, Any]) -> float:
    """Anomalies (score > 0.51, the storage threshold) per series-week."""
    found = 0
    for seed in range(SEEDS):
        det = Sentinel(**params)
        found += sum(det.update(t, v) > 0.51 for t, v in series(kind, step, seed, jitter))
    return found / (SEEDS * WEEKS)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    cases = [
        ("site", 60.0, True),
        ("site", 300.0, True),
        ("site", 60.0, False),
        ("site", 300.0, False),
        ("bin", 60.0, False),
        ("bin", 300.0, False),
    ]
    head = " | ".join(f"{k} {s / 60:.0f} min{' jitter' if j else ''}" for k, s, j in cases)
    print(f"| sentinel | {head} |")
    print("|---|" + "---|" * len(cases))
    for name, params in VARIANTS.items():
        row = " | ".join(f"{anomalies_per_week(k, s, j, params):.2f}" for k, s, j in cases)
        print(f"| {name} | {row} |")
    print(f"(false anomalies per series-week; {SEEDS} seeds x {WEEKS} weeks per cell)")


if __name__ == "__main__":
    main()
