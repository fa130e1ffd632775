"""What a lamp should do: lit from sunset to sunrise at its dimming profile's level, dark by day.

:class:`LampSchedule` answers, per lamp and event time, with the level the lamp should be at
(astral sunrise/sunset for the city's lat/lon, the dimming profile in local time); within a
grace around sunrise/sunset (and around a profile's switch times) nothing is judged.
:func:`lamp_lit` says whether a lamp *is* lit, from its power draw when reported (a lamp that
says "on" but draws nothing is out), else its current, else its ``power_state``.
:func:`schedule_for` builds the schedule of a city model (one per city and configuration).

Example:
    >>> from processors.rules.solar import NS
    >>> sched = LampSchedule(SolarSchedule(31.23, 121.47, 1200), LocalClock("Asia/Shanghai"))
    >>> night = 1717243200 * NS + 2 * 3600 * NS  # 22:00 local, well after sunset
    >>> noon = night - 10 * 3600 * NS  # 12:00 local
    >>> sched.expected("lamp-1", noon), sched.expected("lamp-1", night)
    (0.0, 100.0)
    >>> lamp_lit({"power_w": 0.4, "power_state": "on"}, 3.0, 0.02), lamp_lit({}, 3.0, 0.02)
    (False, None)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from processors.config import RulesConfig
from processors.rules.base import Record
from processors.rules.solar import (
    DAY,
    NIGHT,
    LocalClock,
    SolarSchedule,
    city_location,
    city_timezone,
    parse_hhmm,
    solar_schedule,
)

ON_UNKNOWN_LEVEL = -1.0  # expected lit, level uncertain (next to a profile step)
#: Below this dimming level a lamp's power is too small a signal to judge (lamp_degradation)
#: or to scale up to full output (the detectors' lamp power feature).
MIN_JUDGED_LEVEL_PCT = 10.0
Steps = Iterable[tuple[str | int, str | int, float]]


class DimmingProfile:
    """Level (% of full) per local minute while the sun schedule says lit.

    ``steps`` are (start, end, level) in local time, ``"HH:MM"`` or minutes, end exclusive,
    wrapping midnight allowed; minutes not covered are at 100 %, overlapping steps take the
    lowest level. Level 0 means the lamp is switched off (part-night lighting).

    >>> p = DimmingProfile([("23:00", "01:00", 50.0), ("01:00", "05:00", 0.0)], grace_min=5)
    >>> p.levels[0], p.levels[30], p.levels[62], p.levels[120], p.levels[1378], p.levels[400]
    (50.0, 50.0, None, 0.0, -1.0, 100.0)
    """

    __slots__ = ("levels",)

    def __init__(self, steps: Steps, grace_min: int = 5) -> None:
        raw = [100.0] * 1440
        for start, end, level in steps:
            a = start if isinstance(start, int) else parse_hhmm(start)
            b = end if isinstance(end, int) else parse_hhmm(end)
            a, b = a % 1440, b % 1440
            for k in range((b - a) % 1440 or 1440):
                m = (a + k) % 1440
                raw[m] = min(raw[m], float(level))  # overlapping steps: the dimmest wins
        levels: list[float | None] = list(raw)
        # Controllers switch on their own clocks: do not judge right next to a step.
        for m in range(1440):
            prev = raw[m - 1]
            if prev == raw[m]:
                continue
            for k in range(-grace_min, grace_min):
                j = (m + k) % 1440
                on_off = (prev == 0.0) != (raw[m] == 0.0)
                if on_off:
                    levels[j] = None
                elif levels[j] is not None:
                    levels[j] = ON_UNKNOWN_LEVEL
        self.levels = levels


class LampSchedule:
    """Expected level of a lamp at an event time: 0 (dark), > 0 (lit), -1 (lit, level
    uncertain) or None (too close to a switch time to judge).

    ``plans`` maps a lamp to its circuit's (sun schedule with the circuit's switch offsets,
    dimming profile); lamps not listed use ``solar`` and ``default_profile`` (None: 100 %).
    """

    __slots__ = ("_lamp", "_ts", "_val", "clock", "default", "plans")

    def __init__(
        self,
        solar: SolarSchedule,
        clock: LocalClock | None = None,
        plans: Mapping[str, tuple[SolarSchedule, DimmingProfile | None]] | None = None,
        default_profile: DimmingProfile | None = None,
    ) -> None:
        self.clock = clock or LocalClock("UTC")
        self.default = (solar, default_profile)
        self.plans = dict(plans or {})
        self._lamp, self._ts = "", -1
        self._val: float | None = None

    def plan_key(self, lamp: str) -> int:
        """Lamps with the same key share a plan (so an override's end is the same for them)."""
        return id(self.plans.get(lamp, self.default))

    def expected(self, lamp: str, ts: int) -> float | None:
        # Several rules ask about the same reading in a row; answer repeats from a memo.
        if ts == self._ts and lamp == self._lamp:
            return self._val
        solar, prof = self.plans.get(lamp, self.default)
        ph = solar.phase(ts)
        val: float | None
        if ph == DAY:
            val = 0.0
        elif ph != NIGHT:
            val = None
        elif prof is None:
            val = 100.0
        else:
            val = prof.levels[self.clock.minute_of_day(ts)]
        self._lamp, self._ts, self._val = lamp, ts, val
        return val


def lamp_lit(rec: Record, min_w: float, min_a: float) -> bool | None:
    """Is the lamp lit? Measured draw beats the reported state; None when nothing says."""
    p = rec.get("power_w")
    if p is not None:
        return bool(p >= min_w)
    a = rec.get("current_a")
    if a is not None:
        return bool(a >= min_a)
    s = rec.get("power_state")
    if s is not None:
        return bool(s != "off")
    return None


_SCHEDULES: list[tuple[Any, tuple[Any, ...], LampSchedule]] = []


def schedule_for(cfg: RulesConfig, city: Any) -> LampSchedule:
    """Each lamp's plan from its circuit's schedule in the city model (sun-based otherwise).

    A schedule holds no per-engine state (only caches), so the rules built for one city and
    configuration share one: the first rule to ask about a reading computes, the rest hit
    its memo. The cache keeps the city object alive, so its identity stays meaningful.
    """
    c = cfg.streetlight
    key = (c.grace_s, c.profile_grace_s, cfg.timezone, city_location(city))
    for cached_city, cached_key, sched in _SCHEDULES:
        if cached_city is city and cached_key == key:
            return sched
    sched = _build_schedule(cfg, city)
    _SCHEDULES.insert(0, (city, key, sched))
    del _SCHEDULES[4:]
    return sched


def _build_schedule(cfg: RulesConfig, city: Any) -> LampSchedule:
    lat, lon = city_location(city)
    c = cfg.streetlight
    grace = max(c.grace_s, float(getattr(city, "switch_grace_s", 0) or 0))
    grace_min = max(1, int(c.profile_grace_s // 60))
    profiles: dict[tuple[tuple[str, str, float], ...], DimmingProfile] = {}
    plans: dict[str, tuple[SolarSchedule, DimmingProfile | None]] = {}
    for circ in (getattr(city, "circuits", None) or {}).values():
        sch = circ.schedule
        solar = solar_schedule(lat, lon, grace, float(sch.on_offset_s), float(sch.off_offset_s))
        steps = tuple((st.start, st.end, float(st.level_pct)) for st in sch.dimming)
        prof = profiles.get(steps)
        if prof is None:
            prof = profiles[steps] = DimmingProfile(steps, grace_min)
        for lamp in circ.lamp_ids:
            plans[lamp] = (solar, prof)
    return LampSchedule(
        solar_schedule(lat, lon, grace), LocalClock(city_timezone(cfg.timezone, city)), plans
    )
