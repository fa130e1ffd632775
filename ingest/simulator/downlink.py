"""The simulated lamps' downlink: receive commands on ``…/down``, apply them, ack on ``…/ack``.

ONE MQTT client (user ``simulator``) subscribes ``city/+/streetlight/+/down`` and answers for
every lamp of the simulation, the way each controller would. Payloads are the ones
``commands.downlink`` sends (docs/commands.md):

- down: ``{"cmd_id", "device_id", "kind", "params", "expires_at", "attempt"}``
- ack: ``{"cmd_id", "device_id", "status": "ok"|"rejected"|"unsupported", "detail"?}``

A command id seen before is acknowledged again but not re-applied (the downlink resends
when an ack is lost). Failure paths for tests: lamps in ``ignore`` never answer; lamps in
``ack_only`` acknowledge but do nothing. A silent lamp (``device_silence``) does not answer.

Example:
    >>> async def demo(sim, settings):  # doctest: +SKIP
    ...     result = await run_with_commands(sim, settings, speed=1.0, ignore={"lamp-c01-0003"})
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from typing import Any

import orjson
from paho.mqtt.client import MQTTMessage

from citywatch.backoff import retry
from citywatch.mqtt import AsyncMqtt
from citywatch.security.endpoint import mqtt_kwargs
from citywatch.settings import Settings
from ingest.simulator.engine import Simulation

log = logging.getLogger(__name__)


class SimDownlink:
    def __init__(
        self,
        sim: Simulation,
        settings: Settings,
        *,
        ignore: Iterable[str] = (),
        ack_only: Iterable[str] = (),
        client_id: str | None = None,
    ) -> None:
        self.sim, self.s = sim, settings
        self.ignore, self.ack_only = set(ignore), set(ack_only)
        self.seen: dict[str, str] = {}  # "cmd_id/device_id" -> ack status sent
        self.received: list[dict[str, Any]] = []  # every command that arrived (tests read it)
        root = sim.cfg.topic_root
        self.filter = f"{root}/+/streetlight/+/down"
        self.mqtt = AsyncMqtt(
            **mqtt_kwargs(settings, "simulator"),
            client_id=client_id or f"citywatch-sim-downlink-{sim.cfg.seed}-{os.getpid()}",
            on_message=self._on_message,
        )

    async def start(self, wait_s: float = 60.0) -> None:
        """Connect (retrying while the broker restarts, up to ``wait_s``) and subscribe."""
        await retry(
            self.mqtt.connect,
            (ConnectionError, TimeoutError),
            what="MQTT connect",
            log=log,
            first_s=0.5,
            max_s=5.0,
            give_up_s=wait_s,
        )
        await self.mqtt.subscribe([(self.filter, 1)])

    async def close(self) -> None:
        await self.mqtt.close()

    def _on_message(self, msg: MQTTMessage) -> None:
        try:
            body = orjson.loads(msg.payload)
            cmd_id, device = str(body["cmd_id"]), str(body["device_id"])
            kind, params = str(body["kind"]), dict(body.get("params") or {})
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("unreadable command on %s: %r", msg.topic, msg.payload[:200])
            return
        self.received.append(body)
        if device in self.ignore:
            return
        key = f"{cmd_id}/{device}"
        status = self.seen.get(key)
        detail = ""
        if status is None:
            if float(body.get("expires_at", float("inf"))) < time.time():
                status, detail = "rejected", "expired"
            elif device in self.ack_only:
                status = "ok"
            else:
                answer = self.sim.command(device, kind, params)
                if answer is None:
                    return  # unknown or silent lamp: no answer at all
                status = answer
            self.seen[key] = status
        ack: dict[str, Any] = {"cmd_id": cmd_id, "device_id": device, "status": status}
        if detail:
            ack["detail"] = detail
        topic = msg.topic.rsplit("/", 1)[0] + "/ack"
        self.mqtt.publish_nowait(topic, orjson.dumps(ack), qos=1)


async def run_with_commands(
    sim: Simulation,
    settings: Settings,
    *,
    ignore: Iterable[str] = (),
    ack_only: Iterable[str] = (),
    **publish_kw: Any,
) -> Any:
    """``publisher.publish`` with the lamps obeying commands meanwhile; its PublishResult."""
    from ingest.simulator.publisher import publish

    dl = SimDownlink(sim, settings, ignore=ignore, ack_only=ack_only)
    await dl.start()
    try:
        return await publish(sim, settings, **publish_kw)
    finally:
        await dl.close()
        await asyncio.sleep(0)
