"""Foundation: the real servers answer, with credentials, and the path MQTT -> Kafka works."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from influxdb_client import InfluxDBClient, Point
from influxdb_client.client.write_api import SYNCHRONOUS

from citywatch import credentials, stack
from citywatch.mqtt import AsyncMqtt, MqttRefused
from citywatch.settings import Settings

from .helpers import bin_payload, end_offsets, publish, read_topic, wait_log


def test_status_reports_every_service_healthy(stack_settings: Settings) -> None:
    st = stack.status(stack_settings)
    assert set(st) == {"mosquitto", "kafka", "influxdb"}
    assert all(healthy for _, healthy in st.values()), st


def test_up_twice_is_harmless(stack_settings: Settings) -> None:
    pids = {svc.proc.name: svc.proc.pid() for svc in stack.services(stack_settings)}
    stack.up(stack_settings, log=lambda _: None)
    assert {svc.proc.name: svc.proc.pid() for svc in stack.services(stack_settings)} == pids


async def test_wrong_password_is_refused_by_mosquitto(stack_settings: Settings) -> None:
    s = stack_settings
    c = AsyncMqtt(
        host=s.mqtt.host,
        port=s.mqtt.port,
        client_id="test-bad-pw",
        username="simulator",
        password="not-the-password",
    )
    with pytest.raises(MqttRefused):
        await c.connect()
    await c.close()


async def test_anonymous_is_refused_by_mosquitto(stack_settings: Settings) -> None:
    s = stack_settings
    c = AsyncMqtt(
        host=s.mqtt.host, port=s.mqtt.port, client_id="test-anon", username="", password=""
    )
    with pytest.raises(MqttRefused):
        await c.connect()
    await c.close()


def test_influx_point_written_with_client_is_read_back_with_influxql(
    stack_settings: Settings, rid: str
) -> None:
    i = stack_settings.influx
    pw = credentials.password(stack_settings, "influx")
    ts = time.time_ns()
    with InfluxDBClient(url=i.url, token=f"{i.admin_user}:{pw}", org="-") as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket=i.bucket,
            record=Point("stack_test").tag("run", rid).field("value", 42.5).time(ts),
        )
    r = httpx.get(
        f"{i.url}/query",
        params={
            "db": i.database,
            "u": i.admin_user,
            "p": pw,
            "q": f"SELECT value FROM stack_test WHERE run = '{rid}'",
        },
    )
    series = r.json()["results"][0]["series"][0]
    assert series["values"][0][1] == 42.5


def test_influx_refuses_wrong_password(stack_settings: Settings) -> None:
    i = stack_settings.influx
    r = httpx.get(f"{i.url}/query", params={"q": "SHOW DATABASES", "u": i.admin_user, "p": "x"})
    assert r.status_code == 401


async def test_reading_published_to_mosquitto_arrives_on_kafka(
    stack_settings: Settings, spawn, rid: str
) -> None:
    s = stack_settings
    start = await end_offsets(s, s.kafka.readings_topic)
    gw = spawn("gateway", "--instance", f"gw-{rid}", name="gateway")
    wait_log(gw, "gateway gw-")
    device = f"bin-{rid}"
    acked = await publish(s, [(f"city/central/bin/{device}/up", bin_payload(7, 0.42))])
    assert acked == 1
    recs = await read_topic(
        s,
        s.kafka.readings_topic,
        start,
        until=lambda rs: any(orjson.loads(m.value)["device_id"] == device for m in rs),
    )
    mine = [orjson.loads(m.value) for m in recs if orjson.loads(m.value)["device_id"] == device]
    assert len(mine) == 1
    assert mine[0]["fill_ratio"] == 0.42 and mine[0]["seq"] == 7 and mine[0]["family"] == "bin"
    assert isinstance(mine[0]["ts"], int)
