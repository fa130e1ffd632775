"""``citywatch.mqtt.end_session``: what a departed run-scoped gateway leaves on the broker."""

from __future__ import annotations

import asyncio

import paho.mqtt.client as mqtt
import pytest

from citywatch.mqtt import AsyncMqtt, end_session
from citywatch.security.endpoint import mqtt_kwargs
from citywatch.settings import Settings
from citywatch.stack.mosquitto import Mosquitto

from .test_broker_drops import _client

pytestmark = pytest.mark.integration


async def _queued_for(s: Settings, client_id: str, topic: str, *, end_first: bool) -> int:
    """Messages the broker delivers to ``client_id`` on return, after 5 sent while away."""
    got: list[bytes | bytearray] = []

    def on_message(m: mqtt.MQTTMessage) -> None:
        got.append(m.payload)

    def session(expiry_s: int) -> AsyncMqtt:
        return AsyncMqtt(
            **mqtt_kwargs(s, "gateway"),
            client_id=client_id,
            on_message=on_message,
            clean_start=False,
            session_expiry_s=expiry_s,
        )

    first = session(300)
    await first.connect()
    await first.subscribe([(topic, 1)])
    await asyncio.sleep(0.2)
    await first.close()
    pub = _client(Mosquitto(s), "simulator", f"{client_id}-pub", clean=True)
    try:
        for i in range(5):
            pub.publish(topic, str(i).encode(), qos=1).wait_for_publish(5)
    finally:
        pub.disconnect()
        pub.loop_stop()
    if end_first:
        assert await end_session(s, "gateway", client_id)
    back = session(0)  # no subscription of its own: only a kept session delivers
    await back.connect()
    await asyncio.sleep(1.0)
    await back.close()
    return len(got)


async def test_end_session_drops_what_a_departed_gateway_would_collect(
    stack_settings: Settings, rid: str
) -> None:
    topic = f"city/zz/bin/sess-{rid}/up"
    # Without it the broker keeps queueing for the departed client: the control case.
    assert await _queued_for(stack_settings, f"sess-keep-{rid}", topic, end_first=False) == 5
    assert await _queued_for(stack_settings, f"sess-end-{rid}", topic, end_first=True) == 0


async def test_end_session_reports_an_unreachable_broker(stack_settings: Settings) -> None:
    s = stack_settings.model_copy(deep=True)
    s.mqtt.port = 1  # nothing listens there
    assert await end_session(s, "gateway", "nobody") is False
