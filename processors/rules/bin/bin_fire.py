"""Raise when a bin runs hot: over an absolute limit, or far over its own ambient baseline.

- ``bin_fire`` (critical): temperature > 60 °C, or > 25 °C above the bin's own baseline (a
  slow EWMA of its temperature, i.e. roughly ambient); clears below 50 °C and 15 °C over
  baseline.

The baseline is checkpointed (``learnt``): after a restart a bin is judged against it at once,
and a new rule ends an episode its previous run left open on the first cool reading. Without
a baseline from before, it cannot tell a cool bin from one still smouldering at the level it
would learn, so such an episode waits for the rule's own verdict.

Example:
    >>> from processors.rules.streak import NS
    >>> rule, out = BinFire(), []
    >>> for i, t in enumerate([20.0, 20.0, 20.0, 20.0, 48.0, 21.0]):
    ...     rule.on_reading({"device_id": "bin-1", "family": "bin", "district": "n",
    ...                      "ts": i * 900 * NS, "temperature_c": t}, out)
    >>> for c in out:
    ...     print(c.kind, c.active, c.message)
    bin_fire True 48.0 C (+28.0 C over baseline 20.0 C)
    bin_fire False back to normal
"""

from __future__ import annotations

from typing import Any, ClassVar

from processors.config import BinRulesConfig, RulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.bin.base import BinRule, learnt_pair
from processors.rules.streak import Streak


class _Temp:
    __slots__ = ("base", "n", "prior", "streak")

    def __init__(self) -> None:
        self.base = 0.0
        self.n = 0
        self.prior = False  # the baseline came from a checkpoint: learnt before this run
        self.streak = Streak()


class BinFire(BinRule):
    """Hot bin: absolute limit, or a jump over the bin's own (ambient) baseline."""

    name: ClassVar[str] = "bin_fire"
    kind: ClassVar[str] = "bin_fire"
    severity: ClassVar[str] = "critical"
    description: ClassVar[str] = "temperature > 60 C or > 25 C over the bin's baseline"
    fresh_clears: ClassVar[bool] = True
    learns: ClassVar[bool] = True

    def __init__(
        self, cfg: BinRulesConfig | None = None, hold_s: float = 600.0, repeat_s: float = 60.0
    ) -> None:
        super().__init__(cfg, hold_s, repeat_s)
        self.bins: dict[str, _Temp] = {}

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        t = rec.get("temperature_c")
        if t is None:
            return
        dev, ts = rec["device_id"], rec["ts"]
        b = self.bins.get(dev)
        if b is None:
            b = self.bins[dev] = _Temp()
        if ts <= b.streak.last_ts:
            return
        c = self.cfg
        learnt = b.n >= c.temp_baseline_readings
        over = t - b.base if learnt else 0.0
        bad: bool | None
        if t > c.fire_c or over > c.fire_rise_c:
            bad = True
        elif t < c.fire_clear_c and over < c.fire_clear_rise_c:
            bad = False
        else:
            bad = True if b.streak.on else None  # hysteresis: still burning
        verdict = bad
        if bad is False and b.streak.fresh and not b.prior:
            verdict = None  # no baseline from before this run: not evidence (see module)
        r = b.streak.step(ts, verdict, self.p)
        # Learn ambient only from ordinary readings, so a fire does not become the baseline.
        if bad is False and not b.streak.on and (not learnt or over < c.fire_clear_rise_c):
            b.base = t if b.n == 0 else b.base + c.temp_baseline_alpha * (t - b.base)
            b.n += 1
        if r:
            msg = f"{t:.1f} C" + (
                f" ({over:+.1f} C over baseline {b.base:.1f} C)" if learnt else ""
            )
            self._emit(r, rec, out, msg, t)

    def learnt(self, device: str) -> Any:
        b = self.bins.get(device)
        return None if b is None or b.n == 0 else [b.base, b.n]

    def relearn(self, device: str, state: Any) -> None:
        base, n = learnt_pair(state, "bin_fire baseline")
        b = self.bins.get(device)
        if b is None:
            b = self.bins[device] = _Temp()
        b.base, b.n = base, n
        b.prior = n >= self.cfg.temp_baseline_readings


def build(cfg: RulesConfig, city: Any) -> Rule:
    return BinFire(cfg.bin, cfg.alerts.clear_after_s, cfg.repeat_s)
