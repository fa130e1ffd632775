"""Mosquitto's silent drops made loud: a subscriber over its queue limit loses messages at the
broker, and the gateway reports it (log error + ``citywatch_mqtt_broker_dropped``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from citywatch import credentials
from citywatch.demo import _metric
from citywatch.stack.mosquitto import Mosquitto

from .helpers import wait_log
from .test_security_devices import _gateway_env, free_port, private_settings

pytestmark = pytest.mark.integration

QUEUE = 5


@pytest.fixture
def small_queue_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    s = private_settings(tmp_path / "state")
    s = s.model_copy(update={"mqtt": s.mqtt.model_copy(update={"max_queued_messages": QUEUE})})
    m = Mosquitto(s)
    m.up()
    yield m
    m.proc.stop(10)


def _client(m: Mosquitto, user: str, client_id: str, *, clean: bool) -> mqtt.Client:
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    c.username_pw_set(user, credentials.password(m.s, user))
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0 if clean else 300
    c.connect("127.0.0.1", m.s.mqtt.port, clean_start=clean, properties=props)
    c.loop_start()
    return c


def test_gateway_reports_messages_the_broker_dropped(
    small_queue_broker: Mosquitto, spawn: Any, rid: str
) -> None:
    m = small_queue_broker
    port = free_port()
    gw = spawn(
        "gateway",
        "--instance",
        f"gw-drop-{rid}",
        env=_gateway_env(m.s, CITYWATCH_GATEWAY__METRICS_PORT=str(port)),
        name="gateway",
    )
    wait_log(gw, "up (mode", 60)
    # A persistent session that went away (a retired gateway, say) keeps collecting messages
    # until its queue is full; beyond that Mosquitto drops them, having acked the publisher.
    dead = _client(m, "gateway", f"dead-{rid}", clean=False)
    dead.subscribe(f"city/{rid}/#", qos=1)
    time.sleep(0.5)
    dead.disconnect()
    dead.loop_stop()
    pub = _client(m, "simulator", f"pub-{rid}", clean=True)
    sent = 20
    infos = [pub.publish(f"city/{rid}/x", b"%d" % i, qos=1) for i in range(sent)]
    for info in infos:
        info.wait_for_publish(10)
    pub.disconnect()
    pub.loop_stop()

    # $SYS counters are published every 10 s.
    wait_log(gw, "Mosquitto dropped", 40)
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + 15
    while _metric(url, "citywatch_mqtt_broker_dropped") < sent - QUEUE:
        assert time.monotonic() < deadline, gw.log_text()[-2000:]
        time.sleep(0.5)
    assert "\ncitywatch_mqtt_broker_stored " in httpx.get(url, timeout=5).text
    # The gateway itself lost nothing and kept running.
    assert gw.alive()
