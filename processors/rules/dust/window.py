"""Per-minute ring windows for the dust rules: running sums and counts over the last minutes.

Windows are per-minute buckets in a ring: adding a reading is O(1), out-of-order readings
inside the window land in their own minute (and the site is judged again at once), exact
duplicates (same device and ts) are dropped (by the rules, see ``base.py``).

Example:
    >>> w = MinuteWindow(60, 15)
    >>> w.add(100, 50.0), w.add(90, 70.0), w.add(40, 10.0)  # the last is older than 1 h
    (True, True, False)
    >>> w.mean_short(), w.mean_long(), MINUTE_NS // NS
    (60.0, 60.0, 60)
    >>> again = MinuteWindow(60, 15)
    >>> again.load(w.state())  # as in a checkpoint
    >>> again.mean_short(), again.cnt_long
    (60.0, 2)
"""

from __future__ import annotations

import math
from typing import Any

from processors.rules.streak import NS

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
            self._rebuild(new)
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

    def _rebuild(self, new: int) -> None:
        size, short, mins, sums, cnts = self.size, self.short, self.mins, self.sums, self.cnts
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

    def state(self) -> list[Any]:
        """The window as JSON, for the processor's checkpoints: [head, [[minute, sum, count]]]."""
        kept = [[m, self.sums[i], self.cnts[i]] for i, m in enumerate(self.mins) if m >= 0]
        return [self.head, kept]

    def load(self, state: Any) -> None:
        """Take back what ``state`` gave; ValueError for anything else (another version)."""
        head, kept = state
        if not isinstance(head, int) or not isinstance(kept, list):
            raise ValueError(f"not a minute window: {state!r}")
        size = self.size
        mins, sums, cnts = [-1] * size, [0.0] * size, [0] * size
        for m, total, n in kept:
            if not isinstance(m, int) or not isinstance(n, int) or not head - size < m <= head:
                raise ValueError(f"not a minute of the window: {m!r}")
            mins[m % size], sums[m % size], cnts[m % size] = m, float(total), n
        self.mins, self.sums, self.cnts = mins, sums, cnts
        self._rebuild(head)

    def mean_short(self) -> float:
        return self.sum_short / self.cnt_short if self.cnt_short else math.nan

    def mean_long(self) -> float:
        return self.sum_long / self.cnt_long if self.cnt_long else math.nan
