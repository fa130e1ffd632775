"""Raise when a bin's fill reaches the overflow threshold; clear when emptied or well below.

- ``bin_overflow`` (warning): fill_ratio >= 0.9; clears when the bin reports ``emptied`` or
  its fill drops below 0.8 (the gap keeps a bin hovering at 0.9 from flapping).

Example:
    >>> from processors.rules.streak import NS
    >>> rule, out = BinOverflow(), []
    >>> for i, f in enumerate([0.5, 0.93, 0.1]):
    ...     rule.on_reading({"device_id": "bin-1", "family": "bin", "district": "n",
    ...                      "ts": i * 900 * NS, "fill_ratio": f}, out)
    >>> [(c.kind, c.active) for c in out]  # the first: new state, whatever was open ends
    [('bin_overflow', False), ('bin_overflow', True), ('bin_overflow', False)]
"""

from __future__ import annotations

from typing import Any, ClassVar

from processors.config import BinRulesConfig, RulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.bin.base import BinRule, overflow_verdict


class BinOverflow(BinRule):
    """Fill at or above the threshold until emptied."""

    name: ClassVar[str] = "bin_overflow"
    kind: ClassVar[str] = "bin_overflow"
    description: ClassVar[str] = "fill >= 0.9; clears when emptied or below 0.8"
    fresh_clears: ClassVar[bool] = True
    learns: ClassVar[bool] = True  # whether a bin is on, across restarts (bin.base)

    def __init__(
        self, cfg: BinRulesConfig | None = None, hold_s: float = 600.0, repeat_s: float = 60.0
    ) -> None:
        super().__init__(cfg, hold_s, repeat_s)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        st = self._streak(rec["device_id"])
        r = st.step(rec["ts"], overflow_verdict(rec, st.known_on(), self.cfg), self.p)
        if r:
            f = rec.get("fill_ratio")
            self._emit(
                r,
                rec,
                out,
                f"fill {f} >= {self.cfg.overflow_fill}",
                f,
                off_msg="emptied" if rec.get("emptied") else "fill dropped",
            )


def build(cfg: RulesConfig, city: Any) -> Rule:
    return BinOverflow(cfg.bin, cfg.alerts.clear_after_s, cfg.repeat_s)
