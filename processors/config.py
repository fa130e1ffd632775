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

    name: str = "passthrough"
    metrics: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "streetlight": ["power_w"],
            "bin": ["fill_ratio", "temperature_c"],
            "dust": ["pm10_ugm3", "noise_dba"],
        }
    )
    store_above: float = 0.9


class AlertConfig(BaseModel):
    clear_after_s: float = 600.0
    escalate_after_s: dict[str, float] = Field(
        default_factory=lambda: {"warning": 4 * 3600.0, "major": 2 * 3600.0}
    )


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

    @classmethod
    def load(cls, path: Path | None) -> RulesConfig:
        if path is None or not path.exists():
            return cls()
        return cls.model_validate(tomllib.loads(path.read_text()))
