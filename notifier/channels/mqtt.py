"""MQTT channel: ``crews/{crew_id}/alerts`` (QoS 1) and a retained ``crews/{crew_id}/status``.

Connects as the broker user ``notifier`` (ACL: write ``crews/#``). The alert message is not
retained (each is an event; the payload carries the idempotency key for dedupe); the status
message is retained so a crew's app sees its current open/acknowledged counts on connect.

Example:
    >>> status_topic("crew-north")
    'crews/crew-north/status'
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from citywatch.backoff import retry
from citywatch.mqtt import AsyncMqtt
from citywatch.security.endpoint import mqtt_kwargs
from citywatch.settings import Settings
from notifier.channels import DeliveryError, body

log = logging.getLogger(__name__)


def alerts_topic(crew_id: str) -> str:
    return f"crews/{crew_id}/alerts"


def status_topic(crew_id: str) -> str:
    return f"crews/{crew_id}/status"


class MqttChannel:
    name = "mqtt"

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.timeout = s.notifier.webhook_timeout_s
        self.client = AsyncMqtt(
            **mqtt_kwargs(s, "notifier"),
            client_id=f"citywatch-notifier-{s.notifier.instance}",
            keepalive_s=s.mqtt.keepalive_s,
        )
        self._connector: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # A broker that is down at start must not stop the notifier: keep trying in the
        # background; sends fail (and are retried with backoff) until connected.
        try:
            await self.client.connect()
        except (ConnectionError, TimeoutError) as exc:
            log.warning("MQTT not reachable yet (%s); retrying in the background", exc)
            self._connector = asyncio.create_task(self._connect_forever())

    async def _connect_forever(self) -> None:
        await asyncio.sleep(0.5)  # the first attempt, in start(), has just failed
        await retry(
            self.client.connect,
            (ConnectionError, TimeoutError),
            what="MQTT connect",
            log=log,
            first_s=1.0,
        )
        log.info("MQTT connected")

    async def _publish(self, topic: str, payload: bytes, retain: bool) -> None:
        if self._connector is not None and not self._connector.done():
            raise DeliveryError(f"MQTT publish to {topic}: not connected yet")
        try:
            await asyncio.wait_for(
                self.client.publish(topic, payload, qos=1, retain=retain), self.timeout
            )
        except (TimeoutError, ConnectionError) as exc:
            raise DeliveryError(f"MQTT publish to {topic}: {exc!r}") from exc

    async def send(self, delivery: dict[str, Any]) -> None:
        await self._publish(alerts_topic(delivery["recipient"]), body(delivery), retain=False)

    async def publish_status(self, crew_id: str, counts: dict[str, int]) -> None:
        doc = {"crew_id": crew_id, **counts, "updated_at": time.time()}
        await self._publish(status_topic(crew_id), orjson.dumps(doc), retain=True)

    async def close(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
        await self.client.close()
