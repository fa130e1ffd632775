"""``generate``: the simulation as one deterministic, time-ordered stream of MQTT messages.

Each simulated second, every family emits the reports due then (periodic ones by phase,
plus events), the transport layer adds its faults, and presence messages mark devices
going silent and coming back. Nothing here touches the network: the publisher consumes
the stream, tests compare two streams. The ground truth fills in while the stream is
consumed (vehicle faults are measured from the fixes actually produced), so read
``truth()`` after iterating.

Example:
    >>> from ingest.simulator.config import SimConfig
    >>> sim = Simulation(SimConfig(seed=3, sim_seconds=300, start=1_700_000_000))
    >>> msgs = list(sim.messages())
    >>> msgs == list(Simulation(SimConfig(seed=3, sim_seconds=300, start=1_700_000_000)).messages())
    True
    >>> all(a.t <= b.t for a, b in zip(msgs, msgs[1:]))
    True
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Protocol

from citywatch.citymodel import CityModel
from ingest.simulator.bins import Bins
from ingest.simulator.config import SimConfig
from ingest.simulator.context import SimContext
from ingest.simulator.dust import Dust
from ingest.simulator.formats import Message, topic
from ingest.simulator.lamps import Lamps
from ingest.simulator.timebase import default_start
from ingest.simulator.transport import Transport
from ingest.simulator.vehicles import Vehicles

KEEPALIVE_LWT_S = 90  # a broker notices a dead client after ~1.5 x its 60 s keepalive


class Family(Protocol):
    def emit(self, t: int, out: list[Message]) -> None: ...


class Simulation:
    def __init__(
        self, cfg: SimConfig, city: CityModel | None = None, now: float | None = None
    ) -> None:
        self.cfg = cfg
        self.city = city if city is not None else CityModel.generate(cfg.seed, cfg.scale)
        t0 = cfg.start
        if t0 is None:
            t0 = default_start(self.city, time.time() if now is None else now, cfg.sim_seconds)
        self.ctx = SimContext.build(self.city, cfg, t0)
        self.lamps = Lamps(self.ctx)
        self.now = math.ceil(self.ctx.t0)  # the simulated second being generated
        self.families: list[Family] = [
            self.lamps,
            Bins(self.ctx),
            Vehicles(self.ctx),
            Dust(self.ctx),
        ]
        self.transport = Transport(self.ctx)
        self.stats: Counter[str] = Counter()
        self._presence: dict[int, list[Message]] = {}

    @property
    def t0(self) -> float:
        return self.ctx.t0

    @property
    def t1(self) -> float:
        return self.ctx.t1

    def _status(self, t: int, publisher: str, online: bool) -> Message:
        dev = self.city.devices[publisher]
        return Message(
            t,
            topic(self.cfg.topic_root, dev.district, dev.family, publisher, "status"),
            b"online" if online else b"offline",
            kind="status",
            family=dev.family,
            publisher=publisher,
        )

    def _plan_presence(self, t0: int) -> list[Message]:
        publishers: dict[str, str] = {}
        for dev in self.city.devices.values():
            publishers.setdefault(dev.publisher_id, dev.id)
        for f in self.ctx.plan.faults:
            silent = self.city.devices.get(f.target)
            if f.kind != "device_silence" or silent is None or silent.concentrator_id:
                continue
            off = math.ceil(f.start) + KEEPALIVE_LWT_S
            self._presence.setdefault(off, []).append(self._status(off, silent.id, False))
            on = math.ceil(f.end)
            self._presence.setdefault(on, []).append(self._status(on, silent.id, True))
        first = self.city.devices
        return [
            Message(
                t0,
                topic(self.cfg.topic_root, first[d].district, first[d].family, p, "status"),
                b"online",
                kind="status",
                family=first[d].family,
                publisher=p,
            )
            for p, d in publishers.items()
        ]

    def messages(self) -> Iterator[Message]:
        """Every message of the run, in send order (``Message.t`` never decreases)."""
        t0, t1 = math.ceil(self.t0), math.floor(self.t1)
        if self.cfg.presence:
            yield from self._count(self._plan_presence(t0))
        for t in range(t0, t1):
            self.now = t
            out: list[Message] = []
            for fam in self.families:
                fam.emit(t, out)
            out = self.transport.apply(t, out)
            presence = self._presence.pop(t, None)
            if presence:
                out += presence
            yield from self._count(out)
        # Held messages whose release falls after the end go out at the end, not later.
        yield from self._count([replace(m, t=min(m.t, t1)) for m in self.transport.flush()])

    def command(self, device_id: str, kind: str, params: dict[str, Any]) -> str | None:
        """A command reaching a lamp now (see ``Lamps.command``); its next report shows it."""
        return self.lamps.command(device_id, kind, params, self.now)

    def _count(self, msgs: list[Message]) -> list[Message]:
        st = self.stats
        for m in msgs:
            st[f"messages_{m.kind}"] += 1
            if m.readings:
                st[f"readings_{m.family}"] += len(m.readings)
        return msgs

    def truth(self) -> list[dict[str, Any]]:
        """Ground-truth entries of every fault that showed, by start time."""
        faults = [f for f in self.ctx.plan.faults if f.truth_start is not None]
        faults += self.transport.faults
        faults.sort(key=lambda f: (f.truth_start or 0.0, f.fault_id))
        return [f.truth(self.t1) for f in faults]


def generate(cfg: SimConfig, city: CityModel | None = None) -> Iterator[Message]:
    """The message stream of a run without keeping the ``Simulation`` (tests, benchmarks)."""
    return Simulation(cfg, city).messages()
