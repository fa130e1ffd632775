"""EWMA level plus a time-of-day profile (additive Holt-Winters without trend), z-scored.

The prediction is ``level + profile[time-of-day bin]``; the residual is scaled by an
exponentially weighted mean absolute residual and mapped to ``z² / (z² + z_half²)``. Street
light current, traffic counts and temperatures all repeat daily, so the profile turns "high at
noon" into normal and "high at midnight" into an anomaly. The bin width follows the sampling
interval (estimated from the first gaps), capped at ``max_bins`` bins per day.

Also home of the cadence estimate and the daily profile that the sentinel detector reuses.

Example:
    >>> det = Ewma()
    >>> scores = [det.update(t * 300.0, 10.0) for t in range(100)]
    >>> max(scores[20:])
    0.0
    >>> det.update(100 * 300.0, 30.0) > 0.9
    True
"""

from __future__ import annotations

import math
from array import array
from typing import Any

from processors.detectors.base import (
    Detector,
    pack_array,
    state_count,
    state_number,
    unpack_array,
    usable,
)
from processors.detectors.robust_z import MEAN_AD_TO_SIGMA, squashed

DAY = 86_400.0
NAN = float("nan")


class Cadence:
    """Median gap between the first ``needed`` timestamps, then forgotten (no lasting state).

    Example:
        >>> c = Cadence(needed=4)
        >>> [c.observe(t) for t in (0.0, 300.0, 600.0, 1200.0, 1500.0)]
        [None, None, None, None, 300.0]
    """

    __slots__ = ("_gaps", "_last", "_needed")

    def __init__(self, needed: int = 16) -> None:
        self._gaps: array[float] | None = array("d")
        self._last = NAN
        self._needed = needed

    def copy(self) -> Cadence:
        twin = Cadence(self._needed)
        twin._gaps = None if self._gaps is None else array("d", self._gaps)
        twin._last = self._last
        return twin

    def observe(self, ts: float) -> float | None:
        """Feed a timestamp; returns the median gap once, when enough gaps were seen."""
        gaps = self._gaps
        if gaps is None:
            return None
        if self._last == self._last and ts > self._last:
            gaps.append(ts - self._last)
        self._last = ts
        if len(gaps) < self._needed:
            return None
        self._gaps = None
        return sorted(gaps)[len(gaps) // 2]

    def get_state(self) -> list[Any]:
        return [self._last, None if self._gaps is None else pack_array(self._gaps)]

    def set_state(self, state: list[Any]) -> None:
        """Take back ``get_state``; ValueError/TypeError if it does not fit."""
        last, gaps = state
        self._last = state_number(last)
        # Fewer gaps than needed, or it would have been forgotten already.
        self._gaps = None if gaps is None else array("d", unpack_array("d", gaps, self._needed - 1))


class DailyProfile:
    """One float32 per time-of-day bin, NaN until the bin is first seen.

    ``bins`` follows the sampling interval so each bin holds about one sample per day (a
    5-minute series gets 288 bins when ``max_bins`` allows), because a bin that straddles a
    sharp daily edge would average the two sides and mispredict both.

    Example:
        >>> p = DailyProfile.for_interval(3600.0, max_bins=96)
        >>> len(p), p.index(7200.0)
        (24, 2)
    """

    __slots__ = ("_values",)

    def __init__(self, bins: int) -> None:
        self._values = array("f", [NAN]) * bins

    def copy(self) -> DailyProfile:
        twin = DailyProfile(1)
        twin._values = array("f", self._values)
        return twin

    @classmethod
    def for_interval(cls, interval: float, max_bins: int) -> DailyProfile:
        bins = round(DAY / interval) if interval > 0 else max_bins
        return cls(max(1, min(max_bins, bins)))

    def __len__(self) -> int:
        return len(self._values)

    def index(self, ts: float) -> int:
        bins = len(self._values)
        return int((ts % DAY) * bins / DAY) % bins

    def get(self, i: int) -> float:
        return self._values[i]

    def learn(self, i: int, value: float, rate: float) -> None:
        old = self._values[i]
        self._values[i] = value if old != old else old + rate * (value - old)

    def get_state(self) -> list[Any]:
        return [pack_array(self._values)]

    @classmethod
    def from_state(cls, state: list[Any], max_bins: int) -> DailyProfile:
        """The profile ``get_state`` gave; ValueError/TypeError unless 1..``max_bins`` bins."""
        (values,) = state
        bins = unpack_array("f", values, max_bins)
        if not bins:
            raise ValueError("a profile has at least one bin")
        profile = cls(1)
        profile._values = array("f", bins)
        return profile


class Ewma(Detector):
    """EWMA level + time-of-day profile; residual z-score against an EW mean absolute residual.

    State: the profile (≤ ``max_bins`` float32) plus a few scalars (~0.7 KiB at 96 bins).
    """

    name = "ewma"
    description = "EWMA level + time-of-day profile, residual z-score (0.5 at 4 sigmas)"
    __slots__ = (
        "_alpha",
        "_beta",
        "_cadence",
        "_gamma",
        "_level",
        "_mad",
        "_max_bins",
        "_n",
        "_profile",
        "_z_half_sq",
    )

    def __init__(
        self,
        alpha: float = 0.05,
        season_rate: float = 0.1,
        scale_rate: float = 0.01,
        z_half: float = 4.0,
        max_bins: int = 96,
    ) -> None:
        self._alpha = alpha
        self._gamma = season_rate
        self._beta = scale_rate
        self._z_half_sq = z_half * z_half
        self._max_bins = max_bins
        self._cadence: Cadence | None = Cadence() if max_bins > 0 else None
        self._profile: DailyProfile | None = None
        self._level = NAN
        self._mad = 0.0
        self._n = 0

    def _season(self, ts: float) -> float:
        if self._profile is None:
            return 0.0
        offset = self._profile.get(self._profile.index(ts))
        return 0.0 if offset != offset else offset

    def score_one(self, ts: float, value: float) -> float:
        if self._n < 2 or not usable(value) or not math.isfinite(ts):
            return 0.0
        residual = abs(value - self._level - self._season(ts))
        # A constant history has no spread; grade changes against a tiny relative one.
        sigma = max(MEAN_AD_TO_SIGMA * self._mad, 1e-3 * (abs(self._level) + 1.0))
        return squashed(residual / sigma, self._z_half_sq)

    def learn_one(self, ts: float, value: float) -> None:
        if not usable(value) or not math.isfinite(ts):  # would poison level or profile
            return
        self._n += 1
        if self._cadence is not None:
            interval = self._cadence.observe(ts)
            if interval is not None:
                self._cadence = None
                self._profile = DailyProfile.for_interval(interval, self._max_bins)
        if self._level != self._level:
            self._level = value
            return
        season = self._season(ts)
        residual = value - self._level - season
        # Plain averages while young, so the first points do not dominate for 1/rate steps.
        self._mad += max(self._beta, 1.0 / self._n) * (abs(residual) - self._mad)
        self._level += max(self._alpha, 1.0 / self._n) * (value - season - self._level)
        if self._profile is not None:
            self._profile.learn(self._profile.index(ts), value - self._level, self._gamma)

    def get_state(self) -> list[Any] | None:
        cadence = None if self._cadence is None else self._cadence.get_state()
        profile = None if self._profile is None else self._profile.get_state()
        return [self._n, self._level, self._mad, cadence, profile]

    def set_state(self, state: list[Any]) -> None:
        n, level, mad, cadence, profile = state
        self._n = state_count(n, 2**62)
        self._level = state_number(level)
        self._mad = state_number(mad)
        if cadence is None:
            self._cadence = None
        elif self._cadence is not None:
            self._cadence.set_state(cadence)
        else:
            raise ValueError("a cadence where this detector keeps none")
        self._profile = (
            None if profile is None else DailyProfile.from_state(profile, self._max_bins)
        )
