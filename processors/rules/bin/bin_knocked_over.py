"""Raise when a bin is tilted past the limit (knocked over); clear once it stands upright.

- ``bin_knocked_over`` (warning): tilt >= 45° (one reading); clears below 30°.

Example:
    >>> rule, out = BinKnockedOver(), []
    >>> for i, tilt in enumerate([5.0, 80.0, 40.0, 10.0]):
    ...     rule.on_reading({"device_id": "bin-1", "family": "bin", "district": "n",
    ...                      "ts": (i + 1) * 10**9, "tilt_deg": tilt}, out)
    >>> [(c.active, c.message) for c in out]  # the first: new state, whatever was open ends
    [(False, 'upright again'), (True, 'tilt 80 deg'), (False, 'upright again')]
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
    fresh_clears: ClassVar[bool] = True
    learns: ClassVar[bool] = True  # whether a bin is on, across restarts (bin.base)

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
        # Between the clear and raise levels it stays as it was (None: not known yet).
        bad = True if tilt >= c.tilt_deg else st.known_on() if tilt >= c.tilt_clear_deg else False
        r = st.step(rec["ts"], bad, self.p)
        if r:
            self._emit(r, rec, out, f"tilt {tilt:.0f} deg", tilt, off_msg="upright again")


def build(cfg: RulesConfig, city: Any) -> Rule:
    return BinKnockedOver(cfg.bin, cfg.alerts.clear_after_s, cfg.repeat_s)
