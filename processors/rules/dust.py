"""Dust and noise rules: site exceedances, night noise, stuck and drifting sensors.

- ``dust_exceedance`` (major, target = site id): the rolling 15-min mean PM10 over all the
  site's sensors above the site's limit (``site_limits_ugm3``, else the city model's, else
  150 µg/m³), or the rolling 1-h mean above the 1-h limit (``pm10_limit_1h_ugm3``, scaled by
  the site's limit); needs >= 5 samples in the window; clears when both means are below
  90 % of their limits, so an episode ends only once the hour has calmed down too.
- ``night_noise`` (warning, target = site id): the 15-min mean noise at night (22:00-06:00
  local, or the site's own night) above the night limit (55 dBA); only night readings enter
  the window, so a loud evening does not spill into the night. The mean is energetic (Leq:
  10·log10 of the mean of 10^(L/10)), as noise limits are defined; clears 2 dB below.
- ``stuck_sensor`` (warning): >= 10 identical consecutive PM10 values on one device.
- ``sensor_drift`` (warning): a sensor's PM10 (smoothed: EWMA over ~5 readings) more than 3
  robust sigmas (1.4826·MAD, at least 10 µg/m³ and 10 % of the median) from the median of
  its district's *other* fresh sensors, sustained >= 30 min (a minute back in line does not
  restart the clock; 5 min back in line ends the episode). Dust readings are keyed by
  district, so one processor sees all of them; the district is evaluated once per minute
  of event time, not per reading. When at least three quarters of a site's sensors (two
  at least) are off the same way, that is site dust (the exceedance rule's business), not
  drift; stuck sensors are neither judged nor used as reference.

Windows are per-minute buckets in a ring: adding a reading is O(1), out-of-order readings
inside the window land in their own minute (and the site is judged again at once), exact
duplicates (same device and ts) are dropped.

Example:
    >>> rule, out = DustExceedance(), []
    >>> for m in range(20):
    ...     for s in ("d-1", "d-2"):
    ...         rule.on_reading({"device_id": s, "family": "dust", "district": "n",
    ...                          "site_id": "site-1", "ts": m * 60 * NS,
    ...                          "pm10_ugm3": 80.0 if m < 5 else 240.0}, out)
    >>> (out[0].kind, out[0].target, out[0].target_type, out[0].active)
    ('dust_exceedance', 'site-1', 'site', True)
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from processors.config import DustRulesConfig, RulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.solar import LocalClock, city_timezone, in_window, parse_hhmm
from processors.rules.streak import EMIT_ON, NOTHING, NS, Streak, StreakParams

MINUTE_NS = 60 * NS


class MinuteWindow:
    """Sums and counts per minute over the last ``size`` minutes, plus the last ``short``.

    >>> w = MinuteWindow(60, 15)
    >>> for m in range(100):
    ...     _ = w.add(m, float(m))
    >>> w.mean_short(), w.mean_long(), w.cnt_short, w.cnt_long
    (92.0, 69.5, 15, 60)
    """

    __slots__ = (
        "cnt_long",
        "cnt_short",
        "cnts",
        "head",
        "mins",
        "short",
        "size",
        "sum_long",
        "sum_short",
        "sums",
    )

    def __init__(self, size: int = 60, short: int = 15) -> None:
        self.size, self.short = size, short
        self.mins = [-1] * size
        self.sums = [0.0] * size
        self.cnts = [0] * size
        self.head = -(2**62)
        self.sum_short = self.sum_long = 0.0
        self.cnt_short = self.cnt_long = 0

    def add(self, minute: int, v: float) -> bool:
        """Add a value for ``minute``; False if it is older than the window."""
        if minute > self.head:
            self._advance(minute)
        elif minute <= self.head - self.size:
            return False
        i = minute % self.size
        self.mins[i] = minute
        self.sums[i] += v
        self.cnts[i] += 1
        self.sum_long += v
        self.cnt_long += 1
        if minute > self.head - self.short:
            self.sum_short += v
            self.cnt_short += 1
        return True

    def _advance(self, new: int) -> None:
        size, short, mins, sums, cnts = self.size, self.short, self.mins, self.sums, self.cnts
        if new - self.head >= size or new % size == 0:
            # Long jump, or once per lap to shed float drift: rebuild from the kept minutes.
            self.head = new
            self.sum_short = self.sum_long = 0.0
            self.cnt_short = self.cnt_long = 0
            for i in range(size):
                m = mins[i]
                if m <= new - size:
                    mins[i], sums[i], cnts[i] = -1, 0.0, 0
                elif m >= 0:
                    self.sum_long += sums[i]
                    self.cnt_long += cnts[i]
                    if m > new - short:
                        self.sum_short += sums[i]
                        self.cnt_short += cnts[i]
            return
        for m in range(self.head + 1, new + 1):
            j = (m - short) % size
            if mins[j] == m - short:  # leaves the short window
                self.sum_short -= sums[j]
                self.cnt_short -= cnts[j]
            i = m % size
            if mins[i] == m - size:  # leaves the long window; its slot is reused for m
                self.sum_long -= sums[i]
                self.cnt_long -= cnts[i]
            mins[i], sums[i], cnts[i] = -1, 0.0, 0
        self.head = new

    def mean_short(self) -> float:
        return self.sum_short / self.cnt_short if self.cnt_short else math.nan

    def mean_long(self) -> float:
        return self.sum_long / self.cnt_long if self.cnt_long else math.nan


class _Seen:
    """Recent ts of one device, to drop exact duplicates cheaply."""

    __slots__ = ("last", "recent")

    def __init__(self) -> None:
        self.last = -(2**62)
        self.recent: deque[int] = deque(maxlen=64)

    def fresh(self, ts: int) -> bool:
        if ts > self.last:
            self.last = ts
        elif ts in self.recent:  # rare path: only for late readings
            return False
        self.recent.append(ts)
        return True


def _now(ts: int, st: Streak) -> int:
    """Event time at which to judge a site: a late reading changes the window *now*, so it
    is judged just after the latest one instead of being ignored as out of order."""
    return ts if ts > st.last_ts else st.last_ts + 1


class _DustRule(Rule):
    families: ClassVar[tuple[str, ...]] = ("dust",)
    kind: ClassVar[str]
    severity: ClassVar[str] = "warning"

    def __init__(
        self,
        cfg: DustRulesConfig | None,
        sensor_site: Mapping[str, str] | None,
        hold_s: float,
        repeat_s: float,
    ) -> None:
        self.cfg = cfg or DustRulesConfig()
        self.sensor_site = dict(sensor_site or {})
        self.p = StreakParams(1, 1, int(hold_s * NS), int(repeat_s * NS))
        self.seen: dict[str, _Seen] = {}

    def _fresh(self, dev: str, ts: int) -> bool:
        s = self.seen.get(dev)
        if s is None:
            s = self.seen[dev] = _Seen()
        return s.fresh(ts)

    def _cond(
        self,
        r: int,
        target: str,
        ttype: str,
        ts: int,
        district: str,
        msg: str,
        value: float | None,
        off_msg: str = "back below the limit",
    ) -> Condition:
        on = r == EMIT_ON
        return Condition(
            self.kind,
            target,
            ttype,
            on,
            ts,
            self.severity,
            "dust",
            district,
            msg if on else off_msg,
            value if on else None,
        )

    def _site_cond(
        self, r: int, site: str, rec: Record, ts: int, msg: str, value: float, out: list[Condition]
    ) -> None:
        """A site-level condition for a streak step that changed something."""
        out.append(self._cond(r, site, "site", ts, rec["district"], msg, value))


class _Site:
    __slots__ = ("streak", "win")

    def __init__(self, size: int, short: int) -> None:
        self.win = MinuteWindow(size, short)
        self.streak = Streak()


class DustExceedance(_DustRule):
    """Rolling 15-min (and 1-h) mean PM10 over a site's sensors above the site's limit."""

    name: ClassVar[str] = "dust_exceedance"
    kind: ClassVar[str] = "dust_exceedance"
    severity: ClassVar[str] = "major"
    description: ClassVar[str] = "site's rolling 15-min mean PM10 above its limit (or 1-h)"

    def __init__(
        self,
        cfg: DustRulesConfig | None = None,
        site_limits: Mapping[str, float] | None = None,
        sensor_site: Mapping[str, str] | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        super().__init__(cfg, sensor_site, hold_s, repeat_s)
        self.limits = {**(site_limits or {}), **self.cfg.site_limits_ugm3}
        self.ratio_1h = self.cfg.pm10_limit_1h_ugm3 / self.cfg.pm10_limit_ugm3
        self.sites: dict[str, _Site] = {}

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        v = rec.get("pm10_ugm3")
        if v is None:
            return
        dev = rec["device_id"]
        site = rec.get("site_id") or self.sensor_site.get(dev)
        if site is None:
            return
        ts = rec["ts"]
        if not self._fresh(dev, ts):
            return
        st = self.sites.get(site)
        if st is None:
            st = self.sites[site] = _Site(60, 15)
        w = st.win
        w.add(ts // MINUTE_NS, v)
        c = self.cfg
        if w.cnt_short < c.min_samples:
            return
        lim = self.limits.get(site, c.pm10_limit_ugm3)
        lim_h = lim * self.ratio_1h  # a site's own limit scales its 1-h limit too
        m15 = w.sum_short / w.cnt_short
        m60 = w.sum_long / w.cnt_long
        bad: bool | None
        if m15 > lim or (w.cnt_long >= 4 * c.min_samples and m60 > lim_h):
            bad = True
        elif m15 < c.clear_frac * lim and m60 < c.clear_frac * lim_h:
            bad = False
        else:
            bad = True if st.streak.on else None  # between limit and clear level: as before
        r = st.streak.step(_now(ts, st.streak), bad, self.p)
        if r != NOTHING:
            msg = f"PM10 15-min mean {m15:.0f}, 1-h mean {m60:.0f} µg/m³ (limit {lim:.0f})"
            self._site_cond(r, site, rec, ts, msg, m15, out)


class _Night:
    __slots__ = ("night", "streak", "win")

    def __init__(self) -> None:
        self.win = MinuteWindow(15, 15)
        self.streak = Streak()
        self.night = False


class NightNoise(_DustRule):
    """15-min mean noise at a site above its night limit, at night only."""

    name: ClassVar[str] = "night_noise"
    kind: ClassVar[str] = "night_noise"
    description: ClassVar[str] = "site's 15-min mean noise above the night limit, 22:00-06:00"

    def __init__(
        self,
        clock: LocalClock,
        cfg: DustRulesConfig | None = None,
        site_limits: Mapping[str, float] | None = None,
        site_nights: Mapping[str, tuple[str, str]] | None = None,
        sensor_site: Mapping[str, str] | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        super().__init__(cfg, sensor_site, hold_s, repeat_s)
        self.clock = clock
        self.limits = dict(site_limits or {})
        a, b = self.cfg.night_hours
        self.default_night = (parse_hhmm(a), parse_hhmm(b))
        self.nights = {
            s: (parse_hhmm(a), parse_hhmm(b)) for s, (a, b) in (site_nights or {}).items()
        }
        self.sites: dict[str, _Night] = {}

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        v = rec.get("noise_dba")
        if v is None:
            return
        dev = rec["device_id"]
        site = rec.get("site_id") or self.sensor_site.get(dev)
        if site is None:
            return
        ts = rec["ts"]
        if not self._fresh(dev, ts):
            return
        st = self.sites.get(site)
        if st is None:
            st = self.sites[site] = _Night()
        a, b = self.nights.get(site, self.default_night)
        c = self.cfg
        lim = self.limits.get(site, c.noise_night_dba)
        if not in_window(self.clock.minute_of_day(ts), a, b):
            if st.night:
                st.night = False
                st.win = MinuteWindow(15, 15)  # the next night starts from nothing
            r = st.streak.step(ts, False, self.p)
            if r != NOTHING:
                out.append(self._cond(r, site, "site", ts, rec["district"], "", None, "night over"))
            return
        st.night = True
        w = st.win
        w.add(ts // MINUTE_NS, 10.0 ** (v / 10.0) if c.noise_leq else v)
        if w.cnt_short < c.min_samples:
            r = st.streak.tail(ts, self.p)
            mean = math.nan
        else:
            m = w.sum_short / w.cnt_short
            mean = 10.0 * math.log10(m) if c.noise_leq else m
            bad = mean > lim or (st.streak.on and mean >= lim - c.noise_clear_db)
            r = st.streak.step(_now(ts, st.streak), bad, self.p)
        if r != NOTHING:
            msg = f"night noise 15-min mean {mean:.1f} dBA > {lim:.0f} dBA"
            self._site_cond(r, site, rec, ts, msg, mean, out)


class _Stuck:
    __slots__ = ("n", "streak", "value")

    def __init__(self) -> None:
        self.value = math.nan
        self.n = 0
        self.streak = Streak()


class StuckSensor(_DustRule):
    """The same PM10 value again and again: a normally noisy metric gone flat."""

    name: ClassVar[str] = "stuck_sensor"
    kind: ClassVar[str] = "stuck_sensor"
    description: ClassVar[str] = ">= 10 identical consecutive PM10 values"

    def __init__(
        self, cfg: DustRulesConfig | None = None, hold_s: float = 600.0, repeat_s: float = 60.0
    ) -> None:
        super().__init__(cfg, None, hold_s, repeat_s)
        self.devs: dict[str, _Stuck] = {}

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        v = rec.get("pm10_ugm3")
        if v is None:
            return
        dev, ts = rec["device_id"], rec["ts"]
        st = self.devs.get(dev)
        if st is None:
            st = self.devs[dev] = _Stuck()
        if ts <= st.streak.last_ts:
            return
        if v == st.value:
            st.n += 1
        else:
            st.value, st.n = v, 1
        r = st.streak.step(ts, st.n >= self.cfg.stuck_count, self.p)
        if r != NOTHING:
            out.append(
                self._cond(
                    r,
                    dev,
                    "device",
                    ts,
                    rec["district"],
                    f"PM10 stuck at {v} for {st.n} readings",
                    v,
                    "values moving again",
                )
            )


class _Sensor:
    __slots__ = ("drift_since", "n_same", "near_since", "site", "smooth", "streak", "ts", "value")

    def __init__(self, site: str | None) -> None:
        self.site = site
        self.ts = -(2**62)
        self.value = 0.0
        self.smooth = math.nan  # EWMA of value: drift is slow, the 5 % noise is not
        self.n_same = 0
        self.drift_since: int | None = None
        self.near_since: int | None = None  # back in line since (during a drift episode)
        self.streak = Streak()


class _District:
    __slots__ = ("minute", "sensors")

    def __init__(self) -> None:
        self.sensors: dict[str, _Sensor] = {}
        self.minute = -(2**62)


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def _median_without(ordered: list[float], x: float) -> float:
    """Median of sorted ``ordered`` with one occurrence of ``x`` left out, in O(log n)."""
    i = bisect.bisect_left(ordered, x)
    m = len(ordered) - 1

    def at(k: int) -> float:
        return ordered[k] if k < i else ordered[k + 1]

    return at(m // 2) if m % 2 else 0.5 * (at(m // 2 - 1) + at(m // 2))


# Up to this many live sensors a district's peer statistics are exact leave-one-out; above
# it the spread (MAD) of the whole district stands in for each sensor's peers, which keeps a
# dense district's minute O(n log n) instead of O(n^2 log n) (one sensor moves a MAD of
# 64+ values by at most one rank).
_EXACT_PEERS = 64


class SensorDrift(_DustRule):
    """A sensor reading away from the rest of its district for a sustained time."""

    name: ClassVar[str] = "sensor_drift"
    kind: ClassVar[str] = "sensor_drift"
    description: ClassVar[str] = "> 3 robust sigmas from the district median for >= 30 min"

    def __init__(
        self,
        cfg: DustRulesConfig | None = None,
        sensor_site: Mapping[str, str] | None = None,
        hold_s: float = 600.0,
        repeat_s: float = 60.0,
    ) -> None:
        super().__init__(cfg, sensor_site, hold_s, repeat_s)
        c = self.cfg
        self.districts: dict[str, _District] = {}
        self.after_ns = int(c.drift_after_min * 60 * NS)
        self.reset_ns = int(c.drift_reset_min * 60 * NS)
        self.alpha = c.drift_smooth_alpha
        self.fresh_ns = int(c.fresh_s * NS)
        self.gap_ns = int(c.max_gap_s * NS)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        v = rec.get("pm10_ugm3")
        if v is None:
            return
        dev, ts, district = rec["device_id"], rec["ts"], rec["district"]
        d = self.districts.get(district)
        if d is None:
            d = self.districts[district] = _District()
        s = d.sensors.get(dev)
        if s is None:
            s = d.sensors[dev] = _Sensor(rec.get("site_id") or self.sensor_site.get(dev))
        if ts <= s.ts:
            return
        s.n_same = s.n_same + 1 if v == s.value else 1
        s.ts, s.value = ts, v
        sm = s.smooth
        s.smooth = v if sm != sm else sm + self.alpha * (v - sm)  # sm != sm: NaN, first
        minute = ts // MINUTE_NS
        if minute > d.minute:
            d.minute = minute
            self._evaluate(d, district, ts, out)

    def _evaluate(self, d: _District, district: str, now: int, out: list[Condition]) -> None:
        c = self.cfg
        live = [
            (dev, s)
            for dev, s in d.sensors.items()
            if now - s.ts <= self.fresh_ns and s.n_same < c.stuck_count
        ]
        for s in d.sensors.values():
            if s.drift_since is not None and (
                now - s.ts > self.gap_ns or s.n_same >= c.stuck_count
            ):
                s.drift_since = None  # silent or stuck: start over once it reads again
        if len(live) <= c.drift_min_peers:
            return
        ordered = sorted(s.smooth for _, s in live)
        exact = len(live) <= _EXACT_PEERS
        if not exact:
            whole = _median(ordered)
            whole_mad = _median([abs(x - whole) for x in ordered])
        for dev, s in live:
            if exact:
                others = [o.smooth for k, o in live if k != dev]
                med = _median(others)
                mad = _median([abs(x - med) for x in others])
            else:
                med, mad = _median_without(ordered, s.smooth), whole_mad
            sigma = max(1.4826 * mad, c.drift_sigma_floor_ugm3, c.drift_sigma_floor_frac * abs(med))
            off = s.smooth - med
            far = abs(off) > c.drift_sigmas * sigma
            if far and s.site is not None:
                # Most of its site off the same way is site dust (the exceedance rule's
                # business), not drift; two drifting sensors of four are still drift.
                # "Along" = off at least half as far in the same direction: a site whose
                # base simply sits a little above the district does not count.
                mates = [o.smooth - med for k, o in live if k != dev and o.site == s.site]
                along = 1 + sum(1 for m in mates if m / off >= 0.5)
                if mates and along >= max(2, math.ceil(0.75 * (len(mates) + 1))):
                    far = False
            # A minute back in line (a noisy district minute, a site event next door
            # inflating the spread) does not restart the 30 min: only reset_min does.
            if far:
                if s.drift_since is None:
                    s.drift_since = now
                s.near_since = None
            elif s.drift_since is not None:
                if s.near_since is None:
                    s.near_since = now
                if now - s.near_since >= self.reset_ns:
                    s.drift_since = s.near_since = None
            # Raise only while actually off; an open episode rides out the tolerance.
            bad = (
                s.drift_since is not None
                and now - s.drift_since >= self.after_ns
                and (s.near_since is None or s.streak.on)
            )
            r = s.streak.step(now, bad, self.p)
            if r != NOTHING:
                z = abs(off) / sigma
                out.append(
                    self._cond(
                        r,
                        dev,
                        "device",
                        now,
                        district,
                        f"PM10 {s.smooth:.0f} vs district median {med:.0f} "
                        f"({z:.1f} robust sigmas) for "
                        f"{(now - (s.drift_since or now)) / MINUTE_NS:.0f} min",
                        z,
                        "back in line with its district",
                    )
                )


# --- wiring (registry factories) ----------------------------------------------------------


def _common(cfg: RulesConfig) -> dict[str, Any]:
    return {"cfg": cfg.dust, "hold_s": cfg.alerts.clear_after_s, "repeat_s": cfg.repeat_s}


def _sites(city: Any) -> Iterable[Any]:
    return (getattr(city, "sites", None) or {}).values()


def model_sensor_site(city: Any) -> dict[str, str]:
    return {sid: s.id for s in _sites(city) for sid in s.sensor_ids}


def build_dust_exceedance(cfg: RulesConfig, city: Any) -> Rule:
    return DustExceedance(
        site_limits={s.id: s.pm10_limit_ugm3 for s in _sites(city)},
        sensor_site=model_sensor_site(city),
        **_common(cfg),
    )


def build_night_noise(cfg: RulesConfig, city: Any) -> Rule:
    return NightNoise(
        LocalClock(city_timezone(cfg.timezone, city)),
        site_limits={s.id: s.night_noise_limit_dba for s in _sites(city)},
        site_nights={s.id: (s.night_from, s.night_to) for s in _sites(city)},
        sensor_site=model_sensor_site(city),
        **_common(cfg),
    )


def build_stuck_sensor(cfg: RulesConfig, city: Any) -> Rule:
    return StuckSensor(**_common(cfg))


def build_sensor_drift(cfg: RulesConfig, city: Any) -> Rule:
    return SensorDrift(sensor_site=model_sensor_site(city), **_common(cfg))
