"""Rule names -> factories. Adding a rule is one new module (named as the rule, in its
family's package, with a ``build`` factory) plus one line here.

A factory gets the rules config and the city model (None when no model is loaded; rules that
need it then return None and are skipped).

Example:
    >>> from processors.config import RulesConfig
    >>> [r.name for r in build_rules(RulesConfig(), None)][:2]
    ['device_silence', 'out_of_range']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from processors.config import RulesConfig
from processors.rules.base import Rule
from processors.rules.bin import (
    bin_fast_fill,
    bin_fire,
    bin_knocked_over,
    bin_overflow,
    bin_overflow_unserved,
)
from processors.rules.common import device_silence, out_of_range
from processors.rules.dust import dust_exceedance, night_noise, sensor_drift, stuck_sensor
from processors.rules.streetlight import (
    circuit_outage,
    day_burn,
    lamp_degradation,
    lamp_out,
    voltage_out_of_band,
)
from processors.rules.vehicle import (
    corridor_violation,
    daytime_hauling,
    gps_jump,
    idle_too_long,
    illegal_dump,
    overspeed,
    trip_summary,
)

RuleFactory = Callable[[RulesConfig, Any], Rule | None]

#: Rule name -> its module's ``build``; the module is named as the rule (a test holds to it).
RULES: dict[str, RuleFactory] = {
    "device_silence": device_silence.build,
    "out_of_range": out_of_range.build,
    # circuit_outage before lamp_out: same reading, the circuit view is judged first.
    "circuit_outage": circuit_outage.build,
    "lamp_out": lamp_out.build,
    "day_burn": day_burn.build,
    "lamp_degradation": lamp_degradation.build,
    "voltage_out_of_band": voltage_out_of_band.build,
    "bin_overflow": bin_overflow.build,
    "bin_overflow_unserved": bin_overflow_unserved.build,
    "bin_fast_fill": bin_fast_fill.build,
    "bin_fire": bin_fire.build,
    "bin_knocked_over": bin_knocked_over.build,
    "gps_jump": gps_jump.build,
    "overspeed": overspeed.build,
    "idle_too_long": idle_too_long.build,
    "corridor_violation": corridor_violation.build,
    "illegal_dump": illegal_dump.build,
    "daytime_hauling": daytime_hauling.build,
    "trip_summary": trip_summary.build,
    "dust_exceedance": dust_exceedance.build,
    "night_noise": night_noise.build,
    "stuck_sensor": stuck_sensor.build,
    "sensor_drift": sensor_drift.build,
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
