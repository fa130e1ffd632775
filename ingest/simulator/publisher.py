"""Publish a simulation over MQTT at ``speed`` x real time and keep the ledger of acks.

The generator's messages carry their simulated send time; the publisher sleeps only when it
is ahead of the wall-clock schedule (once per simulated second at most, never per
message), keeps up to ``window`` QoS 1 publishes in flight, and records every PUBACK in the
``Ledger``: acked readings by (device, seq), acked malformed messages by expected reason,
acked presence messages. ``speed <= 0`` publishes as fast as the broker acknowledges.

Two clients: ``fast`` (``ingest.simulator.mqttpub``, MQTT 3.1.1, ~40k msg/s) and ``paho``
(``citywatch.mqtt.AsyncMqtt``, MQTT 5, ~4k msg/s; useful to exercise the shared client).

Example:
    >>> async def demo(settings):  # doctest: +SKIP
    ...     sim = Simulation(SimConfig(sim_seconds=600))
    ...     result = await publish(sim, settings, speed=60.0)
    ...     print(result.ledger.readings_acked, result.rate)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from citywatch.security.endpoint import mqtt_kwargs
from citywatch.settings import Settings
from ingest.simulator.engine import Simulation
from ingest.simulator.formats import Message
from ingest.simulator.ledger import Ledger
from ingest.simulator.mqttpub import AckCallback, FastPublisher
from ingest.simulator.truth import iso


class Client(Protocol):
    inflight: Any  # anything with len(): publishes not yet acknowledged

    async def connect(self) -> None: ...
    def publish(self, topic: str, payload: bytes, token: Any = None) -> None: ...
    async def wait_window(self) -> None: ...
    async def drain(self, limit_s: float = 30.0) -> bool: ...
    async def close(self) -> None: ...


class PahoClient:
    """``citywatch.mqtt.AsyncMqtt`` behind the same small interface as ``FastPublisher``."""

    def __init__(
        self, settings: Settings, client_id: str, on_ack: AckCallback, window: int
    ) -> None:
        from citywatch.mqtt import AsyncMqtt

        # max_inflight=0: paho's own limit walks every queued message on each ack (O(n));
        # the window below bounds what is in flight instead.
        self.mqtt = AsyncMqtt(
            **mqtt_kwargs(settings, "simulator"),
            client_id=client_id,
            max_inflight=0,
        )
        self.on_ack, self.window = on_ack, window
        self.inflight: set[int] = set()
        self._room = asyncio.Event()
        self._n = 0

    async def connect(self) -> None:
        await self.mqtt.connect()

    def publish(self, topic: str, payload: bytes, token: Any = None) -> None:
        self._n += 1
        key = self._n
        self.inflight.add(key)

        def done(fut: asyncio.Future[None]) -> None:
            self.inflight.discard(key)
            self.on_ack(token, not fut.cancelled() and fut.exception() is None)
            self._room.set()

        self.mqtt.publish_nowait(topic, payload, qos=1).add_done_callback(done)

    async def wait_window(self) -> None:
        while len(self.inflight) >= self.window:
            self._room.clear()
            await self._room.wait()

    async def drain(self, limit_s: float = 30.0) -> bool:
        deadline = time.monotonic() + limit_s
        while self.inflight and time.monotonic() < deadline:
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), 0.2)
        return not self.inflight

    async def close(self) -> None:
        self.mqtt.fail_pending(ConnectionError("closing"))
        await self.mqtt.close()


@dataclass
class PublishResult:
    ledger: Ledger
    wall_seconds: float
    max_lag_s: float
    drained: bool
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Acknowledged messages per wall second."""
        return self.ledger.counts["messages_acked"] / max(self.wall_seconds, 1e-9)


async def publish(
    sim: Simulation,
    settings: Settings,
    *,
    speed: float = 60.0,
    window: int | None = None,
    client: str = "fast",
    client_id: str | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    progress_every_s: float = 5.0,
    wall_limit_s: float | None = None,
) -> PublishResult:
    """Run the simulation against the broker; returns the ledger and timings.

    ``wall_limit_s`` stops publishing after that many wall seconds even if the simulated span
    is not done (a benchmark offering more than this machine can generate); what was
    published is drained and the ledger's ``stopped_at`` says where the stream ended.
    """
    window = window or settings.mqtt.max_inflight_messages
    client_id = client_id or f"citywatch-sim-{sim.cfg.seed}-{os.getpid()}"
    ledger = Ledger(
        {
            "seed": sim.cfg.seed,
            "scale": sim.cfg.scale,
            "speed": speed,
            "topic_root": sim.cfg.topic_root,
            "sim_start": iso(sim.t0),
            "sim_end": iso(sim.t1),
            "wall_start": time.time(),
            "client": client,
        }
    )
    counts, by_reason = ledger.counts, ledger.malformed_by_reason

    def on_ack(msg: Message, ok: bool) -> None:
        if not ok:
            counts["messages_failed"] += 1
            return
        counts["messages_acked"] += 1
        kind = msg.kind
        if kind == "reading":
            ledger.ack(msg.readings)
        elif kind == "malformed":
            counts["malformed_acked"] += 1
            by_reason[msg.reason] += 1
        else:
            counts["status_acked"] += 1

    pub: Client
    if client == "paho":
        pub = PahoClient(settings, client_id, on_ack, window)
    else:
        pub = FastPublisher(
            **mqtt_kwargs(settings, "simulator"),
            client_id=client_id,
            on_ack=on_ack,
            window=window,
        )
    await pub.connect()
    loop = asyncio.get_running_loop()
    wall0 = loop.time()
    max_lag = 0.0
    last_t = None
    next_progress = wall0 + progress_every_s
    sim_start = sim.t0
    inflight = pub.inflight
    try:
        for msg in sim.messages():
            if msg.t != last_t:
                last_t = msg.t
                now = loop.time()
                if wall_limit_s is not None and now - wall0 >= wall_limit_s:
                    ledger.meta["stopped_at"] = iso(msg.t)
                    break
                if speed > 0:
                    due = wall0 + (msg.t - sim_start) / speed
                    if due > now + 0.001:
                        await asyncio.sleep(due - now)
                    else:
                        max_lag = max(max_lag, now - due)
                if progress is not None and now >= next_progress:
                    next_progress = now + progress_every_s
                    progress(
                        {
                            "sim_time": msg.t,
                            "published": counts["messages_published"],
                            "acked": counts["messages_acked"],
                            "elapsed_s": now - wall0,
                            "lag_s": max(0.0, now - wall0 - (msg.t - sim_start) / speed)
                            if speed > 0
                            else 0.0,
                        }
                    )
            if len(inflight) >= window:
                await pub.wait_window()
            pub.publish(msg.topic, msg.payload, msg)
            counts["messages_published"] += 1
            if msg.kind == "reading":
                counts["readings_published"] += len(msg.readings)
        drained = await pub.drain()
    finally:
        await pub.close()
    wall = loop.time() - wall0
    ledger.meta["wall_end"] = time.time()
    return PublishResult(ledger, wall, max_lag, drained, dict(sim.stats))
