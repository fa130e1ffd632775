"""The versioned rules file: every threshold the processors use, exportable, diffable, importable.

``citywatch rules export`` writes it as TOML, ``citywatch rules diff FILE`` compares a file with
the active one, ``citywatch rules import FILE`` validates and installs it (``settings.rules_file``).

Example:
    >>> cfg = RulesConfig()
    >>> cfg.version, cfg.expected_interval_s["vehicle"]
    (1, 10.0)
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, Field


class DetectorConfig(BaseModel):
    """Which statistical detector scores which metric, and above what score it is stored."""

    name: str = Field(default_factory=lambda: _default_detector())
    # Scored as reported, except where processors.detectors.features has a feature for the
    # (family, metric): lamp power is scored at full output, so dimming steps do not count.
    metrics: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "streetlight": ["power_w"],
            "bin": ["fill_ratio", "temperature_c"],
            "dust": ["pm10_ugm3", "noise_dba"],
        }
    )
    # The sentinel detector's alert level: a score of exactly 0.5 only ties the series' record
    # (quantised series such as fill steps tie it every few points), 0.51 is a new extreme.
    store_above: float = 0.51


class AlertConfig(BaseModel):
    clear_after_s: float = 600.0
    escalate_after_s: dict[str, float] = Field(
        default_factory=lambda: {"warning": 4 * 3600.0, "major": 2 * 3600.0}
    )


class StreetlightRulesConfig(BaseModel):
    """lamp_out, day_burn, lamp_degradation, voltage_out_of_band, circuit_outage."""

    grace_s: float = 1200.0  # around switch-on/off (sunset/sunrise); the model's if longer
    profile_grace_s: float = 300.0  # around dimming steps: level not judged there
    lit_min_w: float = 3.0  # below this a lamp counts as dark (power_w wins over power_state)
    lit_min_a: float = 0.02  # used when only current_a is reported
    out_readings: int = 2  # lamp_out / day_burn: consecutive readings
    degradation_frac: float = 0.20
    degradation_clear_frac: float = 0.15
    degradation_readings: int = 3
    baseline_samples: int = 12  # median of the first N lit readings per dimming level
    baseline_alpha: float = 0.02  # later EWMA, only from readings within baseline_learn_frac
    baseline_learn_frac: float = 0.05
    baseline_max_shift: float = 0.05  # learnt baseline never moves further from its start
    voltage_band_v: tuple[float, float] = (198.0, 242.0)
    voltage_readings: int = 2
    no_supply_below_v: float = 50.0  # a dead feeder is an outage, not a band violation
    circuit_ratio: float = 0.8
    circuit_clear_ratio: float = 0.5
    circuit_zero_a: float = 0.05
    circuit_zero_w: float = 1.0
    circuit_window_s: float = 360.0  # "within one reporting interval" (300 s) plus jitter
    circuit_min_lamps: int = 3
    circuit_holdoff_ratio: float = 0.5  # lamp_out waits while this share of its circuit is dark
    max_gap_s: float = 3600.0  # a longer silence restarts consecutive-reading counts


class BinRulesConfig(BaseModel):
    """bin_overflow, bin_overflow_unserved, bin_fast_fill, bin_fire, bin_knocked_over."""

    overflow_fill: float = 0.9
    overflow_clear_fill: float = 0.8
    unserved_after_h: float = 12.0
    fast_fill_per_h: float = 0.25
    fast_fill_factor: float = 3.0  # ... and this many times the bin's usual rise rate
    fast_fill_window_s: float = 3600.0
    fire_c: float = 60.0
    fire_rise_c: float = 25.0
    fire_clear_c: float = 50.0
    fire_clear_rise_c: float = 15.0
    temp_baseline_alpha: float = 0.1
    temp_baseline_readings: int = 4
    tilt_deg: float = 45.0
    tilt_clear_deg: float = 30.0


class VehicleRulesConfig(BaseModel):
    """gps_jump, overspeed, corridor_violation, illegal_dump, daytime_hauling, idle_too_long."""

    jump_kmh: float = 200.0
    jump_min_m: float = 300.0  # GPS noise between fixes a second apart is not a jump
    overspeed_kmh: dict[str, float] = Field(
        default_factory=lambda: {"sanitation": 60.0, "garbage": 60.0, "muck": 60.0}
    )
    overspeed_fixes: int = 3
    corridor_m: float = 150.0
    corridor_fixes: int = 3
    clear_fixes: int = 3
    dump_stop_kmh: float = 3.0
    dump_after_min: float = 10.0
    stop_radius_m: float = 100.0  # a stop is one place: drifting beyond this starts a new one
    haul_kmh: float = 5.0
    haul_fixes: int = 3
    banned_hours: tuple[str, str] = ("07:00", "20:00")  # local; the city model's win
    idle_kmh: float = 1.0
    idle_after_min: float = 20.0
    max_gap_s: float = 120.0
    coverage_m: float = 50.0  # trip summaries: route share within this of a fix
    trip_close_after_s: float = 3600.0  # a day's summary is final this long after midnight


class DustRulesConfig(BaseModel):
    """dust_exceedance, night_noise, stuck_sensor, sensor_drift."""

    pm10_limit_ugm3: float = 150.0  # rolling 15-min mean; the city model's site limits win
    pm10_limit_1h_ugm3: float = 150.0  # rolling 1-h mean
    site_limits_ugm3: dict[str, float] = Field(default_factory=dict)
    clear_frac: float = 0.9
    min_samples: int = 5
    noise_night_dba: float = 55.0
    noise_clear_db: float = 2.0
    noise_leq: bool = True  # energetic (Leq) mean of dBA, as noise limits are defined
    night_hours: tuple[str, str] = ("22:00", "06:00")  # local
    stuck_count: int = 10
    drift_sigmas: float = 3.0
    drift_after_min: float = 30.0
    drift_reset_min: float = 5.0  # back in line this long before a drift episode is over
    drift_min_peers: int = 3
    # Sites differ by up to ~25 µg/m³ on their own (base, weather, work): 3 x 10 stays above.
    drift_sigma_floor_ugm3: float = 10.0
    drift_smooth_alpha: float = 0.3  # EWMA of each sensor's PM10 (~5 readings) for drift
    drift_sigma_floor_frac: float = 0.1
    fresh_s: float = 300.0
    max_gap_s: float = 600.0


class RulesConfig(BaseModel):
    version: int = 1
    expected_interval_s: dict[str, float] = Field(
        default_factory=lambda: {"streetlight": 300.0, "bin": 900.0, "vehicle": 10.0, "dust": 60.0}
    )
    silence_k: float = 3.0
    plausible_ranges: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {
            "temperature_c": (-35.0, 120.0),
            "battery_v": (2.0, 15.0),
            "pm10_ugm3": (0.0, 1500.0),
            "pm25_ugm3": (0.0, 1000.0),
        }
    )
    detectors: DetectorConfig = Field(default_factory=DetectorConfig)
    alerts: AlertConfig = Field(default_factory=AlertConfig)
    disabled_rules: list[str] = Field(default_factory=list)
    # Municipal fault rules (docs/faults.md); per family.
    streetlight: StreetlightRulesConfig = Field(default_factory=StreetlightRulesConfig)
    bin: BinRulesConfig = Field(default_factory=BinRulesConfig)
    vehicle: VehicleRulesConfig = Field(default_factory=VehicleRulesConfig)
    dust: DustRulesConfig = Field(default_factory=DustRulesConfig)
    # Local time for banned hours, night noise and dimming profiles; "" = the city model's.
    timezone: str = ""
    # Re-send an active condition at most this often (escalation needs to see it again).
    repeat_s: float = 60.0

    @classmethod
    def load(cls, path: Path | None) -> RulesConfig:
        if path is None or not path.exists():
            return cls()
        return cls.model_validate(tomllib.loads(path.read_text()))


def _default_detector() -> str:
    # Imported late: the detector registry imports every detector module.
    from processors.detectors.registry import DEFAULT_DETECTOR

    return DEFAULT_DETECTOR
