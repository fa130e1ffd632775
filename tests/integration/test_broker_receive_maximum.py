"""Why the gateway bounds what it holds itself (``Gateway.held``): Mosquitto 2.0.11 sends a
subscriber more unacknowledged QoS 1 messages than the MQTT 5 Receive Maximum it announced,
once acknowledgements flow. Pinned here: if a broker upgrade fixes it, this test says so."""

from __future__ import annotations

import asyncio

import pytest

from citywatch.mqttlean import LeanSubscriber
from citywatch.security.endpoint import mqtt_kwargs
from citywatch.settings import Settings
from citywatch.stack.mosquitto import Mosquitto

from .test_broker_drops import _client

pytestmark = pytest.mark.integration

RECEIVE_MAXIMUM = 20


async def test_mosquitto_overshoots_the_receive_maximum_once_acks_flow(
    stack_settings: Settings, rid: str
) -> None:
    s = stack_settings
    topic = f"city/zz/bin/rm-{rid}/up"
    held: list[int] = []
    most = 0

    def on_message(t: str, payload: bytes, qos: int, mid: int) -> None:
        nonlocal most
        held.append(mid)
        most = max(most, len(held))

    sub = LeanSubscriber(
        **mqtt_kwargs(s, "gateway"),
        client_id=f"rm-sub-{rid}",
        on_message=on_message,
        clean_start=True,
        receive_maximum=RECEIVE_MAXIMUM,
    )
    await sub.connect()
    await sub.subscribe([(topic, 1)])
    pub = _client(Mosquitto(s), "simulator", f"rm-pub-{rid}", clean=True)
    try:
        n = 3000
        for _ in range(n):
            pub.publish(topic, b"{}", qos=1)
        got = 0
        for _ in range(1000):
            await asyncio.sleep(0.01)
            # Acknowledge the older half of what is held, as a gateway does when Kafka acks.
            k = len(held) // 2
            for mid in held[:k]:
                sub.ack(mid, 1)
            got += k
            del held[:k]
            if got + len(held) >= n:
                break
        assert got + len(held) == n  # every message arrived: the overshoot loses nothing
        assert most > RECEIVE_MAXIMUM, (
            f"Mosquitto kept to the Receive Maximum ({most} <= {RECEIVE_MAXIMUM}): "
            "the gateway's own bound is now a second line of defence only"
        )
    finally:
        pub.loop_stop()
        pub.disconnect()
        await sub.close()
