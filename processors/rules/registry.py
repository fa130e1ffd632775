"""Rule names -> factories. Adding a rule is one new module plus one line here.

A factory gets the rules config and the city model (None when no model is loaded; rules that
need it then return None and are skipped).

Example:
    >>> from processors.config import RulesConfig
    >>> sorted(r.name for r in build_rules(RulesConfig(), None))[:2]
    ['device_silence', 'out_of_range']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from processors.config import RulesConfig
from processors.rules.base import Rule
from processors.rules.common import DeviceSilence, OutOfRange

RuleFactory = Callable[[RulesConfig, Any], Rule | None]

RULES: dict[str, RuleFactory] = {
    "device_silence": lambda cfg, city: DeviceSilence(cfg.expected_interval_s, cfg.silence_k),
    "out_of_range": lambda cfg, city: OutOfRange(cfg.plausible_ranges),
}


def build_rules(cfg: RulesConfig, city: Any) -> list[Rule]:
    rules = []
    for name, factory in RULES.items():
        if name in cfg.disabled_rules:
            continue
        rule = factory(cfg, city)
        if rule is not None:
            rules.append(rule)
    return rules
