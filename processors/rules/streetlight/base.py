"""What the streetlight rules share: judging a lamp against its schedule, a per-lamp rule base.

:class:`Scheduled` gives a rule the lamp's expected level (its schedule, unless an operator's
command overrides it); :class:`LampRule` is the base of the per-lamp rules (``lamp_out``,
``day_burn``, ``lamp_degradation``, ``voltage_out_of_band``); :func:`common_kwargs` holds the
factory arguments every rule of the family takes from the rules config.

Example:
    >>> from processors.config import RulesConfig
    >>> common_kwargs(RulesConfig())
    {'hold_s': 600.0, 'repeat_s': 60.0}
"""

from __future__ import annotations

from typing import Any, ClassVar

from mypy_extensions import trait

from processors.config import RulesConfig, StreetlightRulesConfig
from processors.rules.base import Record
from processors.rules.overrides import LampOverrides
from processors.rules.solar import NS
from processors.rules.streak import DeviceRule, Streak, StreakParams
from processors.rules.streetlight.schedule import LampSchedule


# A trait: the lamp rules and the circuit rule have different bases (DeviceRule, Rule), and
# the compiled modules (citywatch.native) allow multiple inheritance only from traits.
@trait
class Scheduled:
    """A rule that judges a lamp against what it should do: its schedule, unless an
    operator's command overrides it (``overrides`` is set by the engine)."""

    schedule: LampSchedule
    overrides: LampOverrides | None = None

    def _expected(self, rec: Record, dev: str, ts: int) -> float | None:
        ov = self.overrides
        if ov is not None:
            sch = self.schedule
            level = ov.level(rec, ts, lambda t: sch.expected(dev, t), sch.plan_key(dev))
            if level is not None:
                return level
        return self.schedule.expected(dev, ts)


class LampRule(DeviceRule, Scheduled):
    """A per-lamp rule of the family: one streak per lamp, streak params from the config."""

    families: ClassVar[tuple[str, ...]] = ("streetlight",)
    kind: ClassVar[str]
    severity: ClassVar[str] = "warning"

    def use_overrides(self, overrides: Any) -> None:
        # Here, not in the trait: the rule base's no-op comes first in this class's MRO.
        self.overrides = overrides

    def __init__(self, cfg: StreetlightRulesConfig, hold_s: float, repeat_s: float) -> None:
        self.cfg = cfg
        self.state: dict[str, Streak] = {}
        self.hold_ns = int(hold_s * NS)
        self.repeat_ns = int(repeat_s * NS)

    def _params(self, need: int, clear_need: int, min_span_s: float = 0.0) -> StreakParams:
        return StreakParams(
            need,
            clear_need,
            self.hold_ns,
            self.repeat_ns,
            int(self.cfg.max_gap_s * NS),
            int(min_span_s * NS),
            self.fresh_clears,
        )


def common_kwargs(cfg: RulesConfig) -> dict[str, float]:
    """The alert hold and repeat times every rule of the family takes from the rules config."""
    return {"hold_s": cfg.alerts.clear_after_s, "repeat_s": cfg.repeat_s}
