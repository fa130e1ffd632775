"""Sensor drift: a sensor reading away from the rest of its district for a sustained time.

- ``sensor_drift`` (warning): a sensor's PM10 (smoothed: EWMA over ~5 readings) more than 3
  robust sigmas (1.4826·MAD, at least 10 µg/m³ and 10 % of the median) from the median of
  its district's *other* fresh sensors, sustained >= 30 min (a minute back in line does not
  restart the clock; 5 min back in line ends the episode). Dust readings are keyed by
  district, so one processor sees all of them; the district is evaluated once per minute
  of event time, not per reading. When at least three quarters of a site's sensors (two
  at least) are off the same way, that is site dust (the exceedance rule's business), not
  drift; stuck sensors are neither judged nor used as reference.

Each sensor's state (its smoothed value, how long it has read the same, its drift's start and
streak) is checkpointed (``learnt``): the 30 minutes a drift needs, and the stuck count, are
longer than a restart's replay. A sensor with no checkpoint starts anew, and ends an episode
its previous run left open once it has been in line with its district for the 5 minutes that
end an episode.

Example:
    >>> rule, out = SensorDrift(), []
    >>> for m in range(40):  # four sensors near 50 µg/m³, "e" near 200 from the start
    ...     for i, s in enumerate("abcde"):
    ...         v = (200.0 if s == "e" else 50.0 + i) + m % 3
    ...         rule.on_reading({"device_id": s, "family": "dust", "district": "n",
    ...                          "ts": m * MINUTE_NS + i, "pm10_ugm3": v}, out)
    >>> [(c.kind, c.target, c.active, c.ts // MINUTE_NS) for c in out if c.active][:1]
    [('sensor_drift', 'e', True, 31)]
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Container, Iterable, Mapping
from typing import Any, ClassVar

from processors.config import DustRulesConfig, RulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.dust.base import DustRule, common_kwargs, model_sensor_site
from processors.rules.dust.window import MINUTE_NS
from processors.rules.streak import NOTHING, NS, Streak


class _Sensor:
    __slots__ = (
        "drift_since",
        "n_same",
        "near_since",
        "since",
        "site",
        "smooth",
        "streak",
        "ts",
        "value",
    )

    def __init__(self, site: str | None, since: int) -> None:
        self.site = site
        self.since = since  # the first reading of this state
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


class SensorDrift(DustRule):
    """A sensor reading away from the rest of its district for a sustained time."""

    name: ClassVar[str] = "sensor_drift"
    kind: ClassVar[str] = "sensor_drift"
    description: ClassVar[str] = "> 3 robust sigmas from the district median for >= 30 min"
    fresh_clears: ClassVar[bool] = True
    learns: ClassVar[bool] = True

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
        self.district_of: dict[str, str] = {}  # by sensor, for its checkpoint
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
            s = d.sensors[dev] = _Sensor(rec.get("site_id") or self.sensor_site.get(dev), ts)
            self.district_of[dev] = district
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

    def _located(self, device: str) -> tuple[str, _District, _Sensor] | None:
        """The sensor's district (name and state) and its own state; None when unknown."""
        district = self.district_of.get(device)
        d = None if district is None else self.districts.get(district)
        s = None if d is None else d.sensors.get(device)
        return None if district is None or d is None or s is None else (district, d, s)

    def learnt(self, device: str) -> Any:
        found = self._located(device)
        if found is None:
            return None
        district, d, s = found
        return [
            district,
            s.site,
            d.minute,
            s.since,
            s.ts,
            s.value,
            s.smooth,
            s.n_same,
            s.drift_since,
            s.near_since,
            s.streak.state(),
        ]

    def relearn(self, device: str, state: Any) -> None:
        """A sensor's checkpointed state, unless this rule has seen a newer reading of it."""
        district, site, minute, since, ts, value, smooth, n_same, drift, near, streak = state
        ints = (minute, since, ts, n_same)
        if not isinstance(district, str) or not all(type(x) is int for x in ints):
            raise ValueError(f"not a sensor_drift state: {state!r}")
        if not all(x is None or type(x) is int for x in (drift, near)):
            raise ValueError(f"not a sensor_drift state: {state!r}")
        d = self.districts.get(district)
        if d is None:
            d = self.districts[district] = _District()
        had = d.sensors.get(device)
        if had is not None and had.ts >= ts:
            return
        s = _Sensor(site if isinstance(site, str) else None, since)
        s.streak.load(streak)
        s.ts, s.value, s.n_same = ts, float(value), n_same
        s.smooth = math.nan if smooth is None else float(smooth)
        s.drift_since, s.near_since = drift, near
        d.sensors[device] = s
        self.district_of[device] = district
        # The district was judged up to that minute when the checkpoint was taken: its
        # replayed readings must not judge the minute again.
        if minute > d.minute:
            d.minute = minute

    def clearing(self, device: str) -> Iterable[tuple[str, str, int]]:
        found = self._located(device)
        return () if found is None else found[2].streak.clearing(self.kind, device)

    def forget(self, devices: Container[str]) -> Collection[str]:
        for dev in [k for k in self.district_of if k in devices]:
            d = self.districts.get(self.district_of.pop(dev))
            if d is not None:
                d.sensors.pop(dev, None)
        return ()

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
            bad: bool | None = (
                s.drift_since is not None
                and now - s.drift_since >= self.after_ns
                and (s.near_since is None or s.streak.on)
            )
            if (
                not bad
                and s.streak.fresh
                and (s.drift_since is not None or now - s.since < self.reset_ns)
            ):
                bad = None  # not yet in line for the minutes that end an episode
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


def build(cfg: RulesConfig, city: Any) -> Rule:
    return SensorDrift(sensor_site=model_sensor_site(city), **common_kwargs(cfg))
