"""Sentinel: robust residuals from two predictors, scored as records, with an alert refractory.

Three statistics per point, each non-negative and large when the point is unusual:

* **local**: distance from the median of the last 128 points in IQR units (spikes, dips,
  level shifts);
* **seasonal**: distance from a time-of-day profile in units of its mean absolute residual
  (a daily peak that does not come, a night that looks like noon); only trusted while the
  profile predicts better than the local median, and when it predicts much better (a clean
  daily cycle) the local statistic is discounted, since daily edges are then expected;
* **burst**: an EWMA (span 12) of the local statistic (runs of moderately odd points: a
  burst of spikes, a noisy stretch).

Each statistic is divided by its own *record*: the largest value seen so far, decaying by
``record_decay`` per point (per 5 minutes of series time for series sampled faster) so a
series can change regime, and allowed to grow by at most
``record_growth`` per point so one anomaly does not mask the next similar one. A ratio
above 1 is a new extreme for this series, which is what makes scores comparable across
series with very different noise; the divisor is never below ``record_floor`` (5 standard
deviations), so a calm or young series' new extremes count only when rare in absolute terms.
The largest ratio r becomes the score r / (1 + r), so 0.5 = "as extreme as anything seen".
After an alert (score > ``alert_level``) the score is capped at 0.5 for ``refractory``
points: one incident, one alert. A would-be alert that repeats, within half an hour, one of
the last three a whole number of weeks later is a weekly routine (a building site's quiet
weekend, a bin's collection day) and scores 0.5 unless it is far bigger (``routine_score``).

No look-ahead: each point is scored before it is learnt. State is under 2 KiB per series
(128 float32 values kept sorted with a 1-byte arrival tag each + a ≤ 192-bin float32 profile +
12 doubles + counters), less for series sampled slower than every 7.5 minutes.

Example:
    >>> import math
    >>> det = Sentinel()
    >>> usual = [det.update(t * 300.0, 20 + 5 * math.sin(t / 20) + t * 7919 % 13 / 13)
    ...          for t in range(3000)]
    >>> max(usual) < 0.5
    True
    >>> det.update(3000 * 300.0, 60.0) > 0.5  # the series never left 15-26
    True
"""

from __future__ import annotations

import dataclasses
import math
from array import array
from dataclasses import dataclass, field
from typing import Any

from processors.detectors.base import (
    Detector,
    pack_array,
    state_count,
    unpack_array,
    usable,
)
from processors.detectors.ewma import DAY, NAN, Cadence, DailyProfile
from processors.detectors.robust_z import MEAN_AD_TO_SIGMA, SortedWindow

#: IQR → standard deviation for Gaussian data.
IQR_TO_SIGMA = 1 / 1.349
#: Statistics and ratios are clamped here so extreme inputs cannot produce inf/inf.
MAX_RATIO = 1e12


@dataclass(frozen=True, slots=True)
class SentinelParams:
    """Tuning knobs, shared by all series that use the same values (not per-series state)."""

    window: int = 128  # points behind the local median and IQR
    max_bins: int = 192  # cap on time-of-day bins (192 = one per 7.5 minutes)
    warmup: int = 100  # points before any score; records learnt from here
    record_decay: float = 0.99995  # per point: half-life ≈ 14,000 points (see decay_interval)
    record_growth: float = 1.5  # per point, once warmed up (2 × warmup points)
    burst_span: int = 12  # EWMA span of the burst statistic
    season_discount: float = 4.0  # discount local when the profile is this much better
    alert_level: float = 0.51  # score that starts the refractory period
    refractory: int = 100  # points after an alert with the score capped at 0.5
    scale_rate: float = 0.005  # EW rate of the mean absolute residuals
    season_rate: float = 0.25  # slowest per-day learning rate of a profile bin
    # The least record a ratio is taken against, in standard deviations (the seasonal
    # statistic's floor is the same in its mean-absolute-residual units, the burst's half of
    # it): on a calm series a new record is only news if it is also rare in absolute terms.
    # Without it a young series' records hold a handful of values, and nearly every calm
    # series stored a false anomaly within points 100-110 of its life. 5 sigma: a Gaussian
    # tail of ~1e-6 per point (once in years at a reading a minute) and clear of the 6.5
    # where the NAB development set starts losing windows.
    record_floor: float = 5.0
    # Records decay by record_decay per point, but never faster than once per decay_interval
    # seconds of series time: a dust sensor read every minute then forgets as fast as one read
    # every 5 minutes (the sampling of the data the decay was chosen on), not 5 times faster,
    # which re-flagged a site's daily start whenever a day's jitter made it the biggest yet.
    decay_interval: float = 300.0
    # A would-be alert within this many seconds of a whole number of weeks after one of the
    # last ROUTINE_SLOTS would-be alerts is a weekly routine (a building site's quiet weekend
    # and busy Monday, a bin's collection day): no alert, as no alert inside a daily profile.
    # 0 turns it off. Half an hour, the grain of work schedules; by chance it hides an
    # unrelated alert with odds of about 1 in 170 per remembered one.
    routine_tolerance: float = 1800.0
    # ...unless it scores this much or more (a ratio of 1.5 to its record): a routine repeats
    # a little above its slowly decaying record, and a far bigger event in its hour is news.
    routine_score: float = 0.6
    # Derived: the largest point count any rule above compares with (see update).
    count_cap: int = field(init=False, repr=False, compare=False)
    # Derived: record_floor in the seasonal statistic's units (r / MAE = 1.2533 r / sigma) and
    # for the burst statistic.
    floor_season: float = field(init=False, repr=False, compare=False)
    floor_burst: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # 1 / scale_rate: from there on the scale rate is constant; 0 would mean never.
        steady = math.ceil(1.0 / self.scale_rate) if self.scale_rate > 0 else 2**62
        object.__setattr__(self, "count_cap", max(9, 2 * self.warmup, steady) + 1)
        object.__setattr__(self, "floor_season", self.record_floor * MEAN_AD_TO_SIGMA)
        object.__setattr__(self, "floor_burst", 0.5 * self.record_floor)


DEFAULT_PARAMS = SentinelParams()

# Sentinel._f: first time seen, mean absolute residuals, the three records, the burst EWMA,
# the latest time seen, and from _SEEN on the times of the last ROUTINE_SLOTS would-be alerts.
_T0, _MAE_LOCAL, _MAE_SEASON, _TOP_LOCAL, _TOP_SEASON, _TOP_BURST, _BURST, _LAST, _SEEN = range(9)
#: Would-be alerts remembered for the weekly routine check: up to three routines a week.
ROUTINE_SLOTS = 3
WEEK = 7 * DAY


def _ratio(z: float, top: float, floor: float) -> float:
    """``z`` against its record, never less than ``floor``; 0 before the record has learnt."""
    if top <= 0.0:
        return 0.0
    return z / (top if top > floor else floor)


def _record(
    z: float, top: float, learn: bool, bounded: bool, p: SentinelParams, decay: float
) -> float:
    """The record after seeing ``z``, decayed by ``decay`` (conditionals: runs 3× per point)."""
    if not learn:
        return top
    if bounded and top > 0.0:
        cap = top * p.record_growth
        z = cap if z > cap else z
    decayed = top * decay
    return z if z > decayed else decayed


class Sentinel(Detector):
    """Local/seasonal/burst robust residuals as ratios to their decayed records; see module."""

    name = "sentinel"
    description = (
        "robust local + time-of-day residuals and bursts, scored against the series' own "
        "decayed records, one alert per incident"
    )
    _shared_slots = ("_p",)  # one frozen parameter object serves every series
    __slots__ = ("_cool", "_f", "_n", "_n_season", "_p", "_ring", "_season")

    def __init__(self, params: SentinelParams | None = None, **overrides: Any) -> None:
        p = params or DEFAULT_PARAMS
        self._p = dataclasses.replace(p, **overrides) if overrides else p
        self._ring = SortedWindow(p.window)
        # The sampling interval is estimated first, then the time-of-day profile it implies
        # takes the same slot (none for a series sampled less than 4 times a day).
        self._season: Cadence | DailyProfile | None = Cadence() if p.max_bins >= 4 else None
        self._n = 0
        self._n_season = 0
        # The float state in one array of doubles (indices above): 8 bytes each, where a float
        # object in its own slot costs 32, which keeps the state under 2 KiB.
        self._f = array("d", (NAN, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, NAN) + (NAN,) * ROUTINE_SLOTS)
        self._cool = 0

    def score_one(self, ts: float, value: float) -> float:
        """The score ``update`` would return, without learning (costs a copy of the state)."""
        twin = Sentinel(self._p)
        twin._ring = self._ring.copy()
        twin._season = self._season.copy() if self._season is not None else None
        twin._f = array("d", self._f)
        twin._n, twin._n_season, twin._cool = self._n, self._n_season, self._cool
        return twin.update(ts, value)

    def learn_one(self, ts: float, value: float) -> None:
        self.update(ts, value)

    def get_state(self) -> list[Any] | None:
        season = self._season
        if isinstance(season, Cadence):
            kept: list[Any] | None = ["cadence", season.get_state()]
        elif isinstance(season, DailyProfile):
            kept = ["profile", season.get_state()]
        else:
            kept = None
        return [
            self._n,
            self._n_season,
            self._cool,
            pack_array(self._f),
            self._ring.get_state(),
            kept,
        ]

    def set_state(self, state: list[Any]) -> None:
        p = self._p
        n, n_season, cool, floats, ring, season = state
        f = unpack_array("d", floats, len(self._f))
        if len(f) != len(self._f):
            raise ValueError(f"{len(f)} state numbers where {len(self._f)} belong")
        self._n = state_count(n, p.count_cap)
        self._n_season = state_count(n_season, p.count_cap)
        self._cool = state_count(cool, p.refractory)
        self._ring.set_state(ring)
        if len(self._ring) < min(self._n, p.window):
            raise ValueError("fewer window values than points seen")
        self._f = array("d", f)
        if season is None:
            self._season = None
        elif season[0] == "profile":
            self._season = DailyProfile.from_state(season[1], p.max_bins)
        elif season[0] == "cadence" and isinstance(self._season, Cadence):
            self._season.set_state(season[1])
        else:
            raise ValueError(f"unknown seasonal state {season[0]!r}")

    def update(self, ts: float, value: float) -> float:
        if not usable(value) or not math.isfinite(ts):  # neither scored nor learnt
            return 0.0
        p = self._p
        n = self._n + 1
        # Past the last threshold a count is compared with, it can stop: a count under 257 is
        # one of CPython's shared small ints, 28 bytes less per count and series.
        self._n = n if n < p.count_cap else p.count_cap
        f = self._f
        if f[_T0] != f[_T0]:
            f[_T0] = ts
        decay = p.record_decay
        gap = ts - f[_LAST]  # NaN for the first point
        if gap < p.decay_interval:
            decay = decay ** (gap / p.decay_interval) if gap > 0.0 else 1.0
        if not gap <= 0.0:  # an out-of-order or repeated point does not move time back
            f[_LAST] = ts
        season = self._season
        if isinstance(season, Cadence):
            interval = season.observe(ts)
            if interval is not None:
                # Fewer than 4 samples a day cannot show a daily shape.
                ok = interval > 0 and DAY / interval >= 4
                self._season = DailyProfile.for_interval(interval, p.max_bins) if ok else None
        ring = self._ring
        if n <= 8:  # non-finite values never count, so the ring holds n - 1 values
            ring.push(value)
            return 0.0

        # Local statistic against the window before this point.
        ordered = ring.ordered
        m = len(ordered)
        med = ordered[m // 2]
        scale = (ordered[(3 * m) // 4] - ordered[m // 4]) * IQR_TO_SIGMA
        if scale <= 0.0 and ordered[0] != ordered[m - 1]:
            # Mostly-constant windows (an idle sensor) have IQR 0; the mean deviation
            # still sees rare bursts. A constant window (sorted: first == last) has none, and
            # gets the tiny relative scale below without a pass over it.
            scale = sum(abs(x - med) for x in ordered) / m * MEAN_AD_TO_SIGMA
        floor = 1e-9 * (abs(med + ring.offset) + 1.0)
        scale = scale if scale > floor else floor
        # Compare the value as stored (float32) so a constant series has residual exactly 0.
        residual = ring.push(value) - med
        z_local = abs(residual) / scale
        z_local = z_local if z_local < MAX_RATIO else MAX_RATIO
        rate = p.scale_rate if n * p.scale_rate >= 1.0 else 1.0 / n
        mae_local = f[_MAE_LOCAL] + rate * (abs(residual) - f[_MAE_LOCAL])
        f[_MAE_LOCAL] = mae_local

        # Seasonal statistic against the time-of-day profile (from the second day on).
        z_season = -1.0
        use_season = False
        profile = self._season
        if isinstance(profile, DailyProfile):
            b = profile.index(ts)
            expected = profile.get(b)
            days = (ts - f[_T0]) / DAY
            if expected == expected and days >= 1.0:
                r_season = abs(value - expected)
                n_s = self._n_season + 1
                self._n_season = n_s if n_s < p.count_cap else p.count_cap
                mae = f[_MAE_SEASON]
                use_season = 0.0 < mae < mae_local
                z_season = min(r_season / mae, MAX_RATIO) if mae > 0.0 else 0.0
                f[_MAE_SEASON] = mae + max(p.scale_rate, 1.0 / self._n_season) * (r_season - mae)
            profile.learn(b, value, max(p.season_rate, 1.0 / (days + 1.0)))

        # Ratios to the records; records learn from the warm-up on, bounded growth later.
        learn = n >= p.warmup
        bounded = n >= 2 * p.warmup
        top = f[_TOP_LOCAL]
        ratio = _ratio(z_local, top, p.record_floor)
        f[_TOP_LOCAL] = _record(z_local, top, learn, bounded, p, decay)
        mae_season = f[_MAE_SEASON]
        if mae_season > 0.0 and mae_local > 0.0:
            # A clean daily cycle explains its own edges: trust the local view less.
            weight = min(1.0, p.season_discount * mae_season / mae_local)
        else:
            weight = 1.0
        ratio *= weight
        if z_season >= 0.0:
            top = f[_TOP_SEASON]
            r_season_ratio = _ratio(z_season, top, p.floor_season)
            n_s = self._n_season
            f[_TOP_SEASON] = _record(z_season, top, n_s >= p.warmup, n_s >= 2 * p.warmup, p, decay)
            if use_season and r_season_ratio > ratio:
                ratio = r_season_ratio
        burst = f[_BURST]
        burst += 2.0 / (p.burst_span + 1) * (z_local - burst)
        f[_BURST] = burst
        top = f[_TOP_BURST]
        r_burst = _ratio(burst, top, p.floor_burst) * weight
        f[_TOP_BURST] = _record(burst, top, learn, bounded, p, decay)
        ratio = min(max(ratio, r_burst), MAX_RATIO)

        if n < p.warmup:
            return 0.0
        score = ratio / (1.0 + ratio)
        if self._cool > 0:
            self._cool -= 1
            return min(score, 0.5)
        if score > p.alert_level:
            self._cool = p.refractory
            if self._routine(ts) and score < p.routine_score:
                return 0.5
        return score

    def _routine(self, ts: float) -> bool:
        """Whether a would-be alert at ``ts`` repeats a remembered one a whole number of weeks
        later. Remembers it, in the slot of a repeat (marked as a routine), else in an empty
        slot, else in place of the oldest that is not a routine seen within two weeks: other
        alerts must not push a routine out before its next week comes."""
        tol = self._p.routine_tolerance
        if tol <= 0.0:
            return False
        f = self._f
        # Times from the first point on, so the sign is free to mark a routine (-1 - time).
        now = max(ts - f[_T0], 0.0)
        # Evicted first: an empty slot, then the oldest alert that is not a live routine.
        victim = _SEEN
        victim_key = (True, math.inf)
        for i in range(_SEEN, _SEEN + ROUTINE_SLOTS):
            slot = f[i]
            if slot != slot:  # empty
                key = (False, -math.inf)
            else:
                routine = slot < 0.0
                seen = -1.0 - slot if routine else slot
                gap = now - seen
                if gap >= WEEK - tol and (gap + tol) % WEEK <= 2.0 * tol:
                    f[i] = -1.0 - now
                    return True
                key = (routine and gap <= 2.0 * WEEK + tol, seen)
            if key < victim_key:
                victim, victim_key = i, key
        f[victim] = now
        return False
