"""Sun and local-time helpers for the rules: day/night/twilight and local clock, cached.

:class:`SolarSchedule` says, for an event time in ns (UTC), whether street lamps should be
lit (``NIGHT``), dark (``DAY``) or whether it is too close to sunrise/sunset to judge
(``TWILIGHT``: within ``grace_s`` of either). Sunrise and sunset come from ``astral`` and are
computed once per UTC day for the place; a lookup is one ``bisect`` over a handful of
boundaries. Polar day/night (no sunrise or sunset) is handled.

:class:`LocalClock` maps event time to local wall-clock minutes for a time zone; the UTC
offset is cached per UTC hour, so daylight saving is honoured without a ``zoneinfo`` call
per reading.

Example:
    >>> s = SolarSchedule(31.23, 121.47, grace_s=1200)
    >>> noon_utc = 1717243200 * NS  # 2024-06-01 12:00 UTC = 20:00 in Shanghai
    >>> s.phase(noon_utc) == NIGHT, s.phase(noon_utc - 4 * 3600 * NS) == DAY
    (True, True)
    >>> LocalClock("Asia/Shanghai").minute_of_day(noon_utc)
    1200
"""

from __future__ import annotations

import bisect
import contextlib
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from astral import Observer
from astral.sun import elevation, sunrise, sunset

NS = 1_000_000_000
MINUTE_NS = 60 * NS
HOUR_NS = 3600 * NS
DAY_NS = 86400 * NS

DAY = 0
NIGHT = 1
TWILIGHT = -1

_EPOCH = date(1970, 1, 1)


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NS + dt.microsecond * 1000


class SolarSchedule:
    """Day / night / twilight at one place, from sunrise and sunset with a grace around each."""

    __slots__ = ("_cache", "_last", "_last_day", "grace_ns", "observer", "off_ns", "on_ns")

    def __init__(
        self,
        lat: float,
        lon: float,
        grace_s: float = 1200.0,
        on_offset_s: float = 0.0,
        off_offset_s: float = 0.0,
    ) -> None:
        self.observer = Observer(latitude=lat, longitude=lon)
        self.grace_ns = int(grace_s * NS)
        # A circuit may switch on at sunset + on_offset and off at sunrise + off_offset.
        self.on_ns = int(on_offset_s * NS)
        self.off_ns = int(off_offset_s * NS)
        self._cache: dict[int, tuple[list[int], list[int]]] = {}
        self._last_day = -(2**62)
        self._last: tuple[list[int], list[int]] = ([], [DAY])

    def phase(self, ts: int) -> int:
        """DAY, NIGHT or TWILIGHT at event time ``ts`` (ns since the epoch, UTC)."""
        day = ts // DAY_NS
        if day != self._last_day:
            tab = self._cache.get(day)
            if tab is None:
                if len(self._cache) > 64:
                    self._cache.clear()
                tab = self._cache[day] = self._build(day)
            self._last_day = day
            self._last = tab
        bounds, phases = self._last
        return phases[bisect.bisect_right(bounds, ts)]

    def events(self, day: int) -> list[tuple[int, int]]:
        """(ts, NIGHT for switch-on | DAY for switch-off) of UTC days day-1..day+1, sorted."""
        out: list[tuple[int, int]] = []
        for d in (day - 1, day, day + 1):
            dt = _EPOCH + timedelta(days=d)
            for fn, state, off in ((sunrise, DAY, self.off_ns), (sunset, NIGHT, self.on_ns)):
                with contextlib.suppress(ValueError):  # polar day/night: no such event
                    out.append((_ns(fn(self.observer, dt, tzinfo=UTC)) + off, state))
        out.sort()
        return out

    def _build(self, day: int) -> tuple[list[int], list[int]]:
        # Boundaries covering the UTC day: phase i holds for bounds[i-1] <= ts < bounds[i].
        evs = self.events(day)
        lo, hi = day * DAY_NS, (day + 1) * DAY_NS
        if not evs:
            noon = datetime(1970, 1, 1, 12, tzinfo=UTC) + timedelta(days=day)
            up = elevation(self.observer, noon) > 0
            return [], [DAY if up else NIGHT]
        g = self.grace_ns
        bounds: list[int] = []
        phases: list[int] = [DAY if evs[0][1] == NIGHT else NIGHT]
        for t, state in evs:
            start, end = t - g, t + g  # twilight [t - g, t + g)
            if bounds and start <= bounds[-1]:
                # The phase since the previous event is shorter than the grace (near the
                # polar circles): fold it into one long twilight.
                bounds.pop()
                phases.pop()
                bounds.append(end)
                phases.append(state)
                continue
            bounds += (start, end)
            phases += (TWILIGHT, state)
        # Trim to the day (plus a margin) so bisect stays short.
        keep_b: list[int] = []
        keep_p: list[int] = [phases[0]]
        for i, b in enumerate(bounds):
            if b <= lo - DAY_NS // 4:
                keep_p[0] = phases[i + 1]
            elif b < hi + DAY_NS // 4:
                keep_b.append(b)
                keep_p.append(phases[i + 1])
        return keep_b, keep_p


@lru_cache(maxsize=64)
def solar_schedule(
    lat: float, lon: float, grace_s: float, on_offset_s: float = 0.0, off_offset_s: float = 0.0
) -> SolarSchedule:
    """A shared schedule per place and offsets: its cache is pure, so rules may share it."""
    return SolarSchedule(lat, lon, grace_s, on_offset_s, off_offset_s)


class LocalClock:
    """Local wall-clock minute of day for event times; UTC offset cached per UTC hour."""

    __slots__ = ("_hour", "_off", "_offsets", "tz")

    def __init__(self, tz: str | tzinfo = "UTC") -> None:
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self._offsets: dict[int, int] = {}
        self._hour = -(2**62)
        self._off = 0

    def offset_ns(self, ts: int) -> int:
        hour = ts // HOUR_NS
        if hour == self._hour:
            return self._off
        off = self._offsets.get(hour)
        if off is None:
            if len(self._offsets) > 4096:
                self._offsets.clear()
            dt = datetime.fromtimestamp(hour * 3600, self.tz)
            delta = dt.utcoffset() or timedelta(0)
            off = self._offsets[hour] = int(delta.total_seconds()) * NS
        self._hour, self._off = hour, off
        return off

    def minute_of_day(self, ts: int) -> int:
        return ((ts + self.offset_ns(ts)) // MINUTE_NS) % 1440

    def local_day(self, ts: int) -> int:
        """Days since 1970-01-01 of the local date at ``ts``."""
        return (ts + self.offset_ns(ts)) // DAY_NS

    def day_start_ns(self, local_day: int) -> int:
        """UTC ns of local midnight starting ``local_day``."""
        d = _EPOCH + timedelta(days=local_day)
        return _ns(datetime(d.year, d.month, d.day, tzinfo=self.tz))


def parse_hhmm(s: str) -> int:
    """'22:00' -> minutes after midnight (1320); '24:00' is allowed as the end of a day."""
    hh, _, mm = s.partition(":")
    m = int(hh) * 60 + int(mm or 0)
    if not 0 <= m <= 1440:
        raise ValueError(f"not a time of day: {s!r}")
    return m


def in_window(minute: int, start: int, end: int) -> bool:
    """Is local ``minute`` in [start, end)? Windows may wrap midnight (22:00-06:00)."""
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end


def city_location(city: object) -> tuple[float, float]:
    """(lat, lon) of the city: the city model's centre if it has one, else settings.city."""
    for a, b in (("latitude", "longitude"), ("lat", "lon")):
        lat, lon = getattr(city, a, None), getattr(city, b, None)
        if isinstance(lat, int | float) and isinstance(lon, int | float):
            return float(lat), float(lon)
    from citywatch.settings import get_settings

    c = get_settings().city
    return c.latitude, c.longitude


def city_timezone(configured: str, city: object) -> tzinfo:
    """The rules file's time zone if set, else the city model's (fixed UTC offset), else UTC."""
    if configured:
        return ZoneInfo(configured)
    off = getattr(city, "utc_offset_minutes", None)
    if isinstance(off, int):
        return timezone(timedelta(minutes=off))
    return UTC
