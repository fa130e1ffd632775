"""Rule names -> factories. Adding a rule is one new module plus one line here.

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
from processors.rules import bin as bins
from processors.rules import dust, streetlight, trips, vehicle
from processors.rules.base import Rule
from processors.rules.common import DeviceSilence, OutOfRange

RuleFactory = Callable[[RulesConfig, Any], Rule | None]

RULES: dict[str, RuleFactory] = {
    "device_silence": lambda cfg, city: DeviceSilence(cfg.expected_interval_s, cfg.silence_k),
    "out_of_range": lambda cfg, city: OutOfRange(cfg.plausible_ranges),
    # circuit_outage before lamp_out: same reading, the circuit view is judged first.
    "circuit_outage": streetlight.build_circuit_outage,
    "lamp_out": streetlight.build_lamp_out,
    "day_burn": streetlight.build_day_burn,
    "lamp_degradation": streetlight.build_lamp_degradation,
    "voltage_out_of_band": streetlight.build_voltage,
    "bin_overflow": bins.build(bins.BinOverflow),
    "bin_overflow_unserved": bins.build(bins.BinOverflowUnserved),
    "bin_fast_fill": bins.build(bins.BinFastFill),
    "bin_fire": bins.build(bins.BinFire),
    "bin_knocked_over": bins.build(bins.BinKnockedOver),
    "gps_jump": vehicle.build_gps_jump,
    "overspeed": vehicle.build_overspeed,
    "idle_too_long": vehicle.build_idle,
    "corridor_violation": vehicle.build_corridor,
    "illegal_dump": vehicle.build_illegal_dump,
    "daytime_hauling": vehicle.build_daytime_hauling,
    "trip_summary": trips.build_trips,
    "dust_exceedance": dust.build_dust_exceedance,
    "night_noise": dust.build_night_noise,
    "stuck_sensor": dust.build_stuck_sensor,
    "sensor_drift": dust.build_sensor_drift,
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
