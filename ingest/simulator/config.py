"""Simulation parameters: what to simulate, how fast, and how many faults of each kind.

``fault_rate`` is the share of eligible targets (lamps for ``lamp_out``, circuits for
``circuit_outage``, muck trucks for ``illegal_dump``...) that get one fault of each kind
during the run, at least ``min_faults_per_kind`` where the simulated window allows the kind
at all; ``fault_rates`` overrides it per kind. ``transport_rate`` is the per-message
probability of each message-level transport fault (duplicate, out-of-order, malformed);
``clock_skew_rate`` the share of devices whose clock runs minutes ahead for a while.

Example:
    >>> SimConfig(fault_rates={"lamp_out": 0.1}).rate("lamp_out"), SimConfig().rate("bin_fire")
    (0.1, 0.02)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 1
    scale: int = Field(1, ge=1)
    start: float | None = None  # epoch seconds of simulated start; None = auto (16:00 local)
    sim_seconds: float = Field(16 * 3600.0, gt=0)
    fault_rate: float = Field(0.02, ge=0.0, le=1.0)
    fault_rates: dict[str, float] = Field(default_factory=dict)
    min_faults_per_kind: int = Field(1, ge=0)
    transport_rate: float = Field(0.002, ge=0.0, le=0.2)
    clock_skew_rate: float = Field(0.01, ge=0.0, le=1.0)
    presence: bool = True
    topic_root: str = "city"

    def rate(self, kind: str) -> float:
        return self.fault_rates.get(kind, self.fault_rate)
