"""What a detector scores for a reading's metric: the value itself, or a feature of the reading.

Most metrics are scored as reported. Lamp power is not: it follows the lamp's dimming
schedule (118 W at 100 %, 60 W after the midnight step to 50 %), and a series with less than
a day of history has never seen that step, so every lamp stored an anomaly at its first
midnight (104 of the demo's 130 anomaly points). Scored as power at full output
(``power_w`` × 100 / ``dimming_pct``, lit readings only), the schedule drops out and what
is left is the lamp's own drift. Dark lamps are the schedule rules' business (lamp_out,
day_burn), not the detector's. The anomaly line still stores the reported value.

Adding a feature is one function (or class) here plus one line in ``build_features``.

Example:
    >>> f = LampPowerAtFull(lit_min_w=3.0)
    >>> f({"power_w": 60.0, "dimming_pct": 50.0}), f({"power_w": 0.0, "dimming_pct": 0.0})
    (120.0, None)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from processors.config import RulesConfig
from processors.rules.streetlight.schedule import MIN_JUDGED_LEVEL_PCT

Feature = Callable[[Mapping[str, Any]], float | None]


class LampPowerAtFull:
    """``power_w`` scaled to 100 % output by ``dimming_pct``; None while the lamp is dark."""

    __slots__ = ("lit_min_w",)

    def __init__(self, lit_min_w: float) -> None:
        self.lit_min_w = lit_min_w

    def __call__(self, rec: Mapping[str, Any]) -> float | None:
        p = rec.get("power_w")
        if p is None or p < self.lit_min_w:
            return None
        lvl = rec.get("dimming_pct")
        if lvl is None:  # formats without a level report lamps on at full output
            return float(p)
        if lvl < MIN_JUDGED_LEVEL_PCT:
            return None
        return float(p) * 100.0 / float(lvl)


def build_features(cfg: RulesConfig) -> dict[tuple[str, str], Feature]:
    """(family, metric) -> feature, for the metrics not scored as reported."""
    return {("streetlight", "power_w"): LampPowerAtFull(cfg.streetlight.lit_min_w)}
