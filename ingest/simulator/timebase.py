"""Simulated time: the default start (16:00 local, so the demo crosses dusk) and pacing.

Device timestamps are simulated time, which runs ``speed`` times faster than the wall
clock. Because the gateway refuses readings more than 5 minutes in its future, the default
start is the latest 16:00 (city local time) from which the whole simulated span still ends
before now: readings are then always in the gateway's past (older than an hour means they
are flagged ``late``, which is expected for an accelerated replay).

Example:
    >>> p = Pacer(sim_start=1000.0, wall_start=50.0, speed=60.0)
    >>> p.wall_at(1600.0)
    60.0
"""

from __future__ import annotations

from dataclasses import dataclass

from citywatch.citymodel import CityModel

DAY_S = 86_400
DEFAULT_LOCAL_START_S = 16 * 3600


def default_start(city: CityModel, now: float, sim_seconds: float) -> float:
    """The latest 16:00 local (epoch seconds) with start + sim_seconds <= now."""
    day = city.local_day(now)
    while True:
        start = city.local_midnight(day) + DEFAULT_LOCAL_START_S
        if start + sim_seconds <= now:
            return start
        day -= 1


@dataclass(frozen=True, slots=True)
class Pacer:
    """Maps simulated time to wall time; ``speed`` <= 0 means as fast as possible."""

    sim_start: float
    wall_start: float
    speed: float

    def wall_at(self, sim_t: float) -> float:
        if self.speed <= 0:
            return self.wall_start
        return self.wall_start + (sim_t - self.sim_start) / self.speed
