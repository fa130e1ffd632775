"""Raise when a bin fills much faster than it usually does (a market day, dumping into it).

- ``bin_fast_fill`` (info): fill rising >= 0.25 per hour over a >= 1 h window and >= 3x
  the bin's own usual rise rate (learnt from its first three windows, then from calm ones).

The usual rate is checkpointed (``learnt``), so a restarted processor judges a bin at once
instead of after three hours. A window rising < 0.25/h, or the bin emptied, is evidence by
itself: a new rule's first one ends an episode its previous run left open.

Example:
    >>> rule, out = BinFastFill(), []
    >>> for h, f in enumerate([0.0, 0.05, 0.10, 0.15, 0.5]):
    ...     rule.on_reading({"device_id": "bin-1", "family": "bin", "district": "n",
    ...                      "ts": h * HOUR_NS, "fill_ratio": f}, out)
    >>> [(c.kind, c.active, c.message) for c in out][2:]  # two clears first: a new state
    [('bin_fast_fill', True, 'fill rising 0.35/h (usual 0.05/h)')]
"""

from __future__ import annotations

from typing import Any, ClassVar

from processors.config import BinRulesConfig, RulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.bin.base import HOUR_NS, BinRule, learnt_pair
from processors.rules.streak import NS, Streak


class _Fill:
    __slots__ = ("a_fill", "a_ts", "last_ts", "n", "rate", "streak")

    def __init__(self, ts: int, fill: float) -> None:
        self.a_ts, self.a_fill = ts, fill  # start of the current rate window
        self.last_ts = ts
        self.rate = 0.0  # usual rise rate (per hour) of this bin, EWMA over calm windows
        self.n = 0
        self.streak = Streak()


class BinFastFill(BinRule):
    """Fill rising much faster than usual (a market day, illegal dumping into the bin)."""

    name: ClassVar[str] = "bin_fast_fill"
    kind: ClassVar[str] = "bin_fast_fill"
    severity: ClassVar[str] = "info"
    description: ClassVar[str] = "fill rising >= 0.25/h and >= 3x the bin's usual rate"
    fresh_clears: ClassVar[bool] = True
    learns: ClassVar[bool] = True

    def __init__(
        self, cfg: BinRulesConfig | None = None, hold_s: float = 600.0, repeat_s: float = 60.0
    ) -> None:
        super().__init__(cfg, hold_s, repeat_s)
        self.bins: dict[str, _Fill] = {}
        # Usual rates from checkpoints, for bins not read yet: (rate, windows learnt).
        self.prior: dict[str, tuple[float, int]] = {}
        self.window_ns = int(self.cfg.fast_fill_window_s * NS)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        f = rec.get("fill_ratio")
        if f is None:
            return
        dev, ts = rec["device_id"], rec["ts"]
        b = self.bins.get(dev)
        if b is None:
            b = self.bins[dev] = _Fill(ts, f)
            if self.prior:
                b.rate, b.n = self.prior.pop(dev, (0.0, 0))
            return
        if ts <= b.last_ts:
            return
        b.last_ts = ts
        c = self.cfg
        if rec.get("emptied") or f < b.a_fill - 0.05:
            b.a_ts, b.a_fill = ts, f  # emptied inside the window: the rate means nothing
            r = b.streak.step(ts, False, self.p)
            if r:
                self._emit(r, rec, out, "")
            return
        dt = ts - b.a_ts
        if dt < self.window_ns:
            r = b.streak.tail(ts, self.p)
            if r:
                self._emit(r, rec, out, "")
            return
        rate = (f - b.a_fill) * HOUR_NS / dt
        b.a_ts, b.a_fill = ts, f
        # Judged only once the bin's usual rate is known: a market bin always fills fast.
        bad: bool | None = rate >= c.fast_fill_per_h
        if bad and b.n < 3:
            bad = None
        elif bad:
            bad = rate >= c.fast_fill_factor * b.rate
        if not bad and rate >= 0.0:
            b.rate += (rate - b.rate) / min(b.n + 1, 10)  # a mean at first, then an EWMA
            b.n += 1
        r = b.streak.step(ts, bad, self.p)
        if r:
            self._emit(r, rec, out, f"fill rising {rate:.2f}/h (usual {b.rate:.2f}/h)", rate)

    def learnt(self, device: str) -> Any:
        b = self.bins.get(device)
        if b is None:
            prior = self.prior.get(device)
            return None if prior is None else list(prior)
        return None if b.n == 0 else [b.rate, b.n]

    def relearn(self, device: str, state: Any) -> None:
        rate, n = learnt_pair(state, "bin_fast_fill rate")
        b = self.bins.get(device)
        if b is None:
            self.prior[device] = (rate, n)
        else:
            b.rate, b.n = rate, n


def build(cfg: RulesConfig, city: Any) -> Rule:
    return BinFastFill(cfg.bin, cfg.alerts.clear_after_s, cfg.repeat_s)
