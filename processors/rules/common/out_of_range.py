"""Raise when a measured value falls outside its plausible range; clear when back in range.

The ranges (per metric) are tighter than the gateway's hard bounds; the first metric out of
its range is reported.

Example:
    >>> r = OutOfRange({"temperature_c": (-40.0, 70.0)})
    >>> out = []
    >>> for i, t in enumerate([20.0, 95.0, 21.0]):
    ...     r.on_reading({"device_id": "bin-1", "family": "bin", "district": "n", "ts": i,
    ...                   "temperature_c": t}, out)
    >>> for c in out:
    ...     print(c.kind, c.active, c.message)
    out_of_range True temperature_c=95.0 outside [-40.0, 70.0]
    out_of_range False back in range
"""

from __future__ import annotations

from typing import Any, ClassVar

from processors.config import RulesConfig
from processors.rules.base import Condition, Record, Rule


class OutOfRange(Rule):
    """A measured value outside its plausible range (tighter than the gateway's hard bounds)."""

    name: ClassVar[str] = "out_of_range"
    description: ClassVar[str] = "value outside the plausible range configured per metric"

    def __init__(self, ranges: dict[str, tuple[float, float]]) -> None:
        self.ranges = ranges
        self.bad: set[str] = set()

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        dev = rec["device_id"]
        worst: str | None = None
        for metric, (lo, hi) in self.ranges.items():
            v = rec.get(metric)
            if v is not None and not (lo <= v <= hi):
                worst = f"{metric}={v} outside [{lo}, {hi}]"
                break
        if worst is not None:
            self.bad.add(dev)
            out.append(
                Condition(
                    "out_of_range",
                    dev,
                    "device",
                    True,
                    rec["ts"],
                    "info",
                    rec["family"],
                    rec["district"],
                    worst,
                )
            )
        elif dev in self.bad:
            self.bad.discard(dev)
            out.append(
                Condition(
                    "out_of_range",
                    dev,
                    "device",
                    False,
                    rec["ts"],
                    "info",
                    rec["family"],
                    rec["district"],
                    "back in range",
                )
            )


def build(cfg: RulesConfig, city: Any) -> Rule:
    return OutOfRange(cfg.plausible_ranges)
