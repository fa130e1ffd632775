"""What every family behaviour shares: the city, the window, the fault plan, seq counters.

Each family draws its noise from its own seeded ``random.Random``, so the readings of one
family do not change when another family's code or fault rate changes.

Example:
    >>> from citywatch.citymodel import CityModel
    >>> from ingest.simulator.config import SimConfig
    >>> ctx = SimContext.build(CityModel.generate(1, 1), SimConfig(sim_seconds=3600), 1.7e9)
    >>> ctx.rng("lamps").random() == ctx.rng("lamps").random()
    True
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from citywatch.citymodel import CityModel, Device
from ingest.simulator.config import SimConfig
from ingest.simulator.faults import FaultPlan, phase_of, plan_faults
from ingest.simulator.formats import Message, topic
from ingest.simulator.truth import Fault


@dataclass
class SimContext:
    city: CityModel
    cfg: SimConfig
    t0: float
    t1: float
    plan: FaultPlan
    skews: dict[str, list[Fault]] = field(default_factory=dict)
    _topics: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, city: CityModel, cfg: SimConfig, t0: float) -> SimContext:
        t1 = t0 + cfg.sim_seconds
        plan = plan_faults(city, cfg, t0, t1, lambda pub, iv: phase_of(cfg.seed, pub, iv))
        ctx = cls(city, cfg, t0, t1, plan)
        for f in plan.faults:
            if f.kind == "clock_skew":
                ctx.skews.setdefault(f.target, []).append(f)
        return ctx

    def rng(self, concern: str) -> random.Random:
        return random.Random(f"citywatch-sim:{self.cfg.seed}:{concern}")

    def phase(self, publisher_id: str, interval: int) -> int:
        return phase_of(self.cfg.seed, publisher_id, interval)

    def faults(self, target: str | None) -> list[Fault]:
        """Detection faults planned for a target (device, circuit or site id)."""
        if target is None:
            return []
        return [f for f in self.plan.by_target.get(target, ()) if f.kind != "clock_skew"]

    @staticmethod
    def active(faults: list[Fault], t: float) -> Fault | None:
        for f in faults:
            if f.start <= t < f.end:
                return f
        return None

    def device_ts(self, device_id: str, t: float) -> float:
        """The device's clock at true time ``t`` (ahead by the skew while one is active)."""
        skews = self.skews.get(device_id)
        if skews:
            for f in skews:
                if f.start <= t < f.end:
                    f.mark()
                    return t + float(f.params["skew_s"])
        return t

    def uplink(self, dev: Device) -> str:
        cached = self._topics.get(dev.publisher_id)
        if cached is None:
            cached = topic(self.cfg.topic_root, dev.district, dev.family, dev.publisher_id)
            self._topics[dev.publisher_id] = cached
        return cached

    def message(
        self, t: int, dev: Device, payload: bytes, readings: tuple[tuple[str, int], ...]
    ) -> Message:
        return Message(
            t, self.uplink(dev), payload, readings, family=dev.family, publisher=dev.publisher_id
        )
