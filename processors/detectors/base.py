"""The detector interface: one small, synchronous, I/O-free object per (device, metric) series.

A detector sees a series one point at a time and answers an anomaly score in [0, 1]
(0 = normal, 1 = surely anomalous) *before* learning from the point, so a score never uses
the point it judges (no look-ahead). Thresholding and alert policy live elsewhere
(processors.alerts); a detector only scores.

The shape follows river (``score_one`` / ``learn_one``) and NAB (``handleRecord`` -> score);
``update`` does both in one call and is what hot paths use.

Example:
    >>> from processors.detectors.registry import create
    >>> det = create("passthrough")
    >>> det.update(0.0, 1.5)
    0.0
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar


class Detector(ABC):
    """Online anomaly detector for one series; subclasses keep their state small (<= 2 KiB)."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def score_one(self, ts: float, value: float) -> float:
        """Score ``value`` at ``ts`` (epoch seconds) against what was learnt so far."""

    @abstractmethod
    def learn_one(self, ts: float, value: float) -> None:
        """Fold the point into the state."""

    def update(self, ts: float, value: float) -> float:
        """Score then learn; subclasses may fuse the two for speed."""
        score = self.score_one(ts, value)
        self.learn_one(ts, value)
        return score


class PassThrough(Detector):
    """Scores everything 0: the baseline for detector speed benchmarks.

    Example:
        >>> PassThrough().update(0.0, 42.0)
        0.0
    """

    name = "passthrough"
    description = "scores every point 0 (speed baseline)"
    __slots__ = ()

    def score_one(self, ts: float, value: float) -> float:
        return 0.0

    def learn_one(self, ts: float, value: float) -> None:
        return None

    def update(self, ts: float, value: float) -> float:
        return 0.0
