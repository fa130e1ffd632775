"""Raise when an overflowing bin is still not emptied 12 h after its overflow began.

- ``bin_overflow_unserved`` (major): the same overflow still not emptied 12 h after it
  began. A separate kind rather than the alert manager's escalation, because the manager
  escalates every warning after one fixed time while the service deadline for bins is its
  own number, and crews need "overdue" as a distinct, routable alert. The scorecard matches
  ``bin_overflow`` alone, so the extra kind never counts against it.

The unserved check runs on the bin's own readings, so it fires at most one reporting
interval (15 min) after the deadline. When the overflow began goes into the processor's
checkpoints: a processor restarted 6 h into an overflow used to start the 12 h afresh, and
told the crews 6 h late.

Example:
    >>> rule, out = BinOverflowUnserved(), []
    >>> for h, f, emptied in [(0, 0.95, False), (6, 0.97, False), (12, 0.99, False),
    ...                       (13, 0.05, True)]:
    ...     rule.on_reading({"device_id": "bin-1", "family": "bin", "district": "n",
    ...                      "ts": h * HOUR_NS, "fill_ratio": f, "emptied": emptied}, out)
    >>> for c in out:
    ...     print(c.kind, c.active, c.message)
    bin_overflow_unserved True overflowing for 12.0 h, not emptied
    bin_overflow_unserved False emptied
"""

from __future__ import annotations

from collections.abc import Collection, Container
from typing import Any, ClassVar

from processors.config import BinRulesConfig, RulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.bin.base import HOUR_NS, BinRule, learnt_ts, overflow_verdict
from processors.rules.streak import Streak


class _Unserved:
    __slots__ = ("known", "last_ts", "over", "since", "streak")

    def __init__(self) -> None:
        self.last_ts = -(2**62)
        self.over = False
        self.since = 0
        self.streak = Streak()
        self.known = False  # the overflow's start came from a checkpoint


class BinOverflowUnserved(BinRule):
    """An overflow not emptied within ``unserved_after_h`` of its start."""

    name: ClassVar[str] = "bin_overflow_unserved"
    kind: ClassVar[str] = "bin_overflow_unserved"
    severity: ClassVar[str] = "major"
    description: ClassVar[str] = "overflowing bin not emptied within 12 h"
    fresh_clears: ClassVar[bool] = True
    learns: ClassVar[bool] = True  # when a bin's overflow began, across restarts

    def __init__(
        self, cfg: BinRulesConfig | None = None, hold_s: float = 600.0, repeat_s: float = 60.0
    ) -> None:
        super().__init__(cfg, hold_s, repeat_s)
        self.bins: dict[str, _Unserved] = {}
        self.after_ns = int(self.cfg.unserved_after_h * HOUR_NS)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        dev = rec["device_id"]
        b = self.bins.get(dev)
        if b is None:
            b = self.bins[dev] = _Unserved()
        ts = rec["ts"]
        if ts <= b.last_ts:
            return
        b.last_ts = ts
        fresh = b.streak.fresh and not b.known
        v = overflow_verdict(rec, b.over or (None if fresh else False), self.cfg)
        if v is True and not b.over:
            b.over, b.since = True, ts
        elif v is False:
            b.over = False
        bad: bool | None
        if b.over:
            # A new state's clock starts at its first overflowing reading, maybe hours late:
            # until the deadline it cannot say the bin was served.
            bad = True if ts - b.since >= self.after_ns else None if fresh else False
        else:
            bad = None if fresh and v is not False else False
        r = b.streak.step(ts, bad, self.p)
        if r:
            hours = (ts - b.since) / HOUR_NS
            self._emit(
                r, rec, out, f"overflowing for {hours:.1f} h, not emptied", hours, off_msg="emptied"
            )

    def learnt(self, device: str) -> Any:
        b = self.bins.get(device)
        return [b.since, b.last_ts] if b is not None and b.over else None

    def relearn(self, device: str, state: Any) -> None:
        since, at = state
        what = "bin_overflow_unserved time"
        since, at = learnt_ts(since, what), learnt_ts(at, what)
        if since > at:
            raise ValueError(f"an overflow from after its last reading: {state!r}")
        b = self.bins[device] = _Unserved()
        b.over, b.since, b.last_ts, b.known = True, since, at, True

    def forget(self, devices: Container[str]) -> Collection[str]:
        for dev in [d for d in self.bins if d in devices]:
            del self.bins[dev]
        return ()


def build(cfg: RulesConfig, city: Any) -> Rule:
    return BinOverflowUnserved(cfg.bin, cfg.alerts.clear_after_s, cfg.repeat_s)
