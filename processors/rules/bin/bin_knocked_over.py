"""Raise when a bin is tilted past the limit (knocked over); clear once it stands upright.

- ``bin_knocked_over`` (warning): tilt >= 45° (one reading); clears below 30°.

Example:
    >>> rule, out = BinKnockedOver(), []
    >>> for i, tilt in enumerate([5.0, 80.0, 40.0, 10.0]):
    ...     rule.on_reading({"device_id": "bin-1", "family": "bin", "district": "n",
    ...                      "ts": (i + 1) * 10**9, "tilt_deg": tilt}, out)
    >>> [(c.kind, c.active, c.message) for c in out]
    [('bin_knocked_over', True, 'tilt 80 deg'), ('bin_knocked_over', False, 'upright again')]
"""

from __future__ import annotations

from typing import Any, ClassVar

from processors.config import BinRulesConfig, RulesConfig
from processors.rules.base import Condition, Record, Rule
from processors.rules.bin.base import BinRule


class BinKnockedOver(BinRule):
    """Tilted past the limit."""

    name: ClassVar[str] = "bin_knocked_over"
    kind: ClassVar[str] = "bin_knocked_over"
    description: ClassVar[str] = "tilt >= 45 degrees"

    def __init__(
        self, cfg: BinRulesConfig | None = None, hold_s: float = 600.0, repeat_s: float = 60.0
    ) -> None:
        super().__init__(cfg, hold_s, repeat_s)

    def on_reading(self, rec: Record, out: list[Condition]) -> None:
        tilt = rec.get("tilt_deg")
        if tilt is None:
            return
        c = self.cfg
        st = self._streak(rec["device_id"])
        bad = tilt >= c.tilt_deg or (st.on and tilt >= c.tilt_clear_deg)
        r = st.step(rec["ts"], bad, self.p)
        if r:
            self._emit(r, rec, out, f"tilt {tilt:.0f} deg", tilt, off_msg="upright again")


def build(cfg: RulesConfig, city: Any) -> Rule:
    return BinKnockedOver(cfg.bin, cfg.alerts.clear_after_s, cfg.repeat_s)
