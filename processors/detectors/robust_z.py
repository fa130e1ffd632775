"""Rolling robust z-score: distance from the median of the last points, in MAD units.

The median and the MAD (median absolute deviation) ignore up to half the window being
outliers, so a spike does not hide the next one the way a mean/standard deviation would. The
z-score maps to a score with ``z² / (z² + z_half²)``: 0.5 at ``z_half`` robust sigmas (3.5 is
the usual "modified z-score" outlier cut of Iglewicz and Hoaglin).

Also home of the small ring buffer and median/MAD helpers the other detectors share.

Example:
    >>> det = RobustZ(window=16)
    >>> [round(det.update(float(t), 10.0 + (t % 3)), 2) for t in range(20)][-1]
    0.0
    >>> det.update(20.0, 50.0) > 0.9
    True
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from processors.detectors.base import (
    Detector,
    pack_array,
    state_count,
    state_number,
    unpack_array,
    usable,
)

#: MAD → standard deviation for Gaussian data.
MAD_TO_SIGMA = 1.4826
#: Mean absolute deviation → standard deviation for Gaussian data.
MEAN_AD_TO_SIGMA = 1.2533


class Ring:
    """The last ``size`` values, stored as float32 offsets from the first value seen.

    4 bytes per value instead of 8; storing ``value − offset`` keeps float32's 7 digits for the
    variation rather than for a large constant part (a meter reading of 1e6 ± 0.5).
    ``values()`` are offsets (order not kept): subtract ``offset`` from a new value to compare.

    Example:
        >>> r = Ring(3)
        >>> [r.push(v) for v in (1001.0, 1002.0, 1003.0, 1004.0)]
        [0.0, 1.0, 2.0, 3.0]
        >>> r.offset, sorted(r.values())
        (1001.0, [1.0, 2.0, 3.0])
    """

    __slots__ = ("_buf", "_next", "_size", "offset")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("ring size must be >= 1")
        self._buf = array("f")
        self._size = size
        self._next = 0
        self.offset = 0.0

    def __len__(self) -> int:
        return len(self._buf)

    def push(self, value: float) -> float:
        """Store ``value``; returns it as stored (offset, float32-rounded) for exact compares."""
        buf = self._buf
        if not buf:
            self.offset = value
        if len(buf) < self._size:
            buf.append(value - self.offset)
            return buf[-1]
        i = self._next
        buf[i] = value - self.offset
        self._next = (i + 1) % self._size
        return buf[i]

    def values(self) -> array[float]:
        return self._buf

    def get_state(self) -> list[Any]:
        return [self._next, self.offset, pack_array(self._buf)]

    def set_state(self, state: list[Any]) -> None:
        """Take back ``get_state``; ValueError/TypeError if it does not fit this size."""
        nxt, offset, buf = state
        values = unpack_array("f", buf, self._size)
        self._next = state_count(nxt, self._size - 1)
        self.offset = _finite(state_number(offset))
        self._buf = array("f", values)  # an exact copy: frombytes leaves spare room


class SortedWindow:
    """The last ``size`` values in ascending order, as float32 offsets from the first value.

    Like ``Ring`` (same storage, offset and rounding), but kept sorted as values come and go:
    one bisection and two short memory moves per value instead of sorting the whole window on
    every point, which was half of the sentinel detector's time. Each value's arrival number
    (mod 256) sits at the same position in ``_tags``, so the oldest value is found by a byte
    search and no second, time-ordered copy of the values is needed (1 byte per value, not 4).

    Example:
        >>> w = SortedWindow(3)
        >>> [w.push(v) for v in (1003.0, 1001.0, 1002.0, 1000.0)]
        [0.0, -2.0, -1.0, -3.0]
        >>> w.offset, list(w.ordered)
        (1003.0, [-3.0, -2.0, -1.0])
    """

    __slots__ = ("_next", "_size", "_tags", "offset", "ordered")

    def __init__(self, size: int) -> None:
        if not 1 <= size <= 255:
            raise ValueError("window size must be 1..255 (arrival tags are single bytes)")
        self.ordered = array("f")
        self._tags = bytearray()
        self._size = size
        self._next = 0
        self.offset = 0.0

    def __len__(self) -> int:
        return len(self.ordered)

    def copy(self) -> SortedWindow:
        twin = SortedWindow(self._size)
        twin.ordered = array("f", self.ordered)
        twin._tags = bytearray(self._tags)
        twin._next, twin.offset = self._next, self.offset
        return twin

    def get_state(self) -> list[Any]:
        return [
            self._next,
            self.offset,
            pack_array(self.ordered),
            pack_array(self._tags),
        ]

    def set_state(self, state: list[Any]) -> None:
        """Take back ``get_state``; ValueError/TypeError unless it is a window of this size
        (ascending values, and the arrival tags of the last ones before ``next``)."""
        nxt, offset, ordered, tags = state
        values = unpack_array("f", ordered, self._size)
        arrivals = unpack_array("B", tags, self._size)
        tag = state_count(nxt, 0xFF)
        k = len(values)
        if len(arrivals) != k or sorted(arrivals) != sorted((tag - k + i) & 0xFF for i in range(k)):
            raise ValueError("arrival tags do not match the window")
        if any(v != v for v in values) or any(a > b for a, b in pairwise(values)):
            raise ValueError("window values are not in ascending order")
        self._next = tag
        self.offset = _finite(state_number(offset))
        self.ordered = array("f", values)
        self._tags = bytearray(arrivals.tobytes())

    def push(self, value: float) -> float:
        """Store ``value``; returns it as stored (offset, float32-rounded) for exact compares."""
        ordered = self.ordered
        tags = self._tags
        size = self._size
        if not ordered:
            self.offset = value
        _F32[0] = value - self.offset
        stored = _F32[0]
        tag = self._next
        self._next = (tag + 1) & 0xFF
        full = len(ordered) == size
        oldest = tags.index((tag - size) & 0xFF) if full else -1
        if full:
            del ordered[oldest]
        at = bisect_right(ordered, stored)
        ordered.insert(at, stored)
        if oldest == 0:
            # A bytearray drops its first byte by moving its start, and the next insert then
            # regrows it with ~20 spare bytes for good: shift the tags in place instead.
            tags[0:at] = tags[1 : at + 1]
            tags[at] = tag
        else:
            if full:
                del tags[oldest]
            tags.insert(at, tag)
        if not full and len(ordered) == size:
            # Growing one by one left spare capacity; exact copies keep ~50 bytes per series.
            self.ordered = array("f", ordered)
            self._tags = bytearray(tags)
        return stored


def _finite(x: float) -> float:
    if not math.isfinite(x):
        raise ValueError(f"{x} where a finite number belongs")
    return x


#: Rounds a value to float32 the way ``array("f")`` stores it.
_F32 = array("f", [0.0])


def median_mad(ordered: Sequence[float]) -> tuple[float, float]:
    """Median (upper one for even sizes) and MAD of an already sorted, non-empty sequence.

    The absolute deviations below and above the median are two sorted runs; the MAD is their
    merged middle element, found by bisection in O(log n) instead of a second sort.

    Example:
        >>> median_mad([1.0, 2.0, 3.0, 4.0, 100.0])
        (3.0, 1.0)
    """
    n = len(ordered)
    p = n // 2
    med = ordered[p]
    k = n // 2  # index of the wanted deviation in the merged ascending order
    n_lo, n_hi = p, n - p  # deviations from below: med - ordered[p-1-i]; above: ordered[p+j] - med
    lo = max(0, k + 1 - n_hi)
    hi = min(k + 1, n_lo)
    while True:
        i = (lo + hi) // 2  # take i deviations from below and j from above
        j = k + 1 - i
        below_last = med - ordered[p - i] if i > 0 else -1.0
        above_next = ordered[p + j] - med if j < n_hi else float("inf")
        above_last = ordered[p + j - 1] - med if j > 0 else -1.0
        below_next = med - ordered[p - 1 - i] if i < n_lo else float("inf")
        if below_last > above_next:
            hi = i - 1
        elif above_last > below_next:
            lo = i + 1
        else:
            return med, max(below_last, above_last)


def robust_sigma(ordered: Sequence[float], med: float, mad: float) -> float:
    """A scale that is never 0 while the values differ: MAD, else mean absolute deviation.

    Mostly-constant series (a sensor idling at 0 with rare bursts) have MAD 0; the mean
    absolute deviation still sees the bursts. A truly constant window returns 0.
    """
    if mad > 0.0:
        return MAD_TO_SIGMA * mad
    return MEAN_AD_TO_SIGMA * sum(abs(x - med) for x in ordered) / len(ordered)


def squashed(z: float, z_half_sq: float) -> float:
    """``z² / (z² + z_half²)`` in [0, 1], written so a huge z gives 1.0 rather than inf/inf.

    Example:
        >>> squashed(3.5, 3.5**2), squashed(1e200, 1.0), squashed(0.0, 1.0)
        (0.5, 1.0, 0.0)
    """
    if z < 1e-150:  # z² would underflow to 0
        return 0.0
    if z > 1e150:  # z² would overflow to inf
        return 1.0
    z_sq = z * z
    return z_sq / (z_sq + z_half_sq)


class RobustZ(Detector):
    """Robust z-score of each point against the median/MAD of the previous ``window`` points.

    State: ``window`` float32 values plus a few scalars (~0.4 KiB at the default 64).
    """

    name = "robust_z"
    description = "rolling median/MAD z-score over the last 64 points (0.5 at 3.5 sigmas)"
    __slots__ = ("_min_points", "_ring", "_z_half_sq")

    def __init__(self, window: int = 64, z_half: float = 3.5, min_points: int = 8) -> None:
        self._ring = Ring(window)
        self._z_half_sq = z_half * z_half
        self._min_points = max(2, min(min_points, window))

    def score_one(self, ts: float, value: float) -> float:
        values = self._ring.values()
        if len(values) < self._min_points or not usable(value):
            return 0.0
        ordered = sorted(values)
        med, mad = median_mad(ordered)
        # A constant history has no spread; grade changes against a tiny relative one
        # instead of calling every change certain.
        floor = 1e-3 * (abs(med + self._ring.offset) + 1.0)
        sigma = max(robust_sigma(ordered, med, mad), floor)
        return squashed(abs(value - self._ring.offset - med) / sigma, self._z_half_sq)

    def learn_one(self, ts: float, value: float) -> None:
        if usable(value):  # a NaN or inf reading would poison the window
            self._ring.push(value)

    def get_state(self) -> list[Any] | None:
        return self._ring.get_state()

    def set_state(self, state: list[Any]) -> None:
        self._ring.set_state(state)
