"""A lamp an operator switched off at night raises no lamp_out; its dark neighbour does.

The command goes to a commands topic of the test's own through Kafka, exactly as the commands
service writes it; the processor reads it before judging the readings."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaProducer

from citywatch.kafkautil import client_kwargs
from citywatch.settings import Settings
from commands.model import Command
from commands.service import command_record
from processors.config import RulesConfig
from processors.rules.streetlight.schedule import schedule_for

from .helpers import create_topic, delete_topic, influx_query, produce_records, wait_for, wait_log

pytestmark = pytest.mark.integration

S = 1_000_000_000
MIN = 60 * S


def _night_start() -> int:
    """A past minute with an hour of lamp-lit schedule after it (the processor's default city)."""
    sch = schedule_for(RulesConfig(), None)
    t = (time.time_ns() // MIN) * MIN - 2 * 3600 * S
    while True:
        if all(sch.expected("probe", t + k * 5 * MIN) == 100.0 for k in range(13)):
            return t
        t -= 10 * MIN


def _lamp(dev: str, ts: int) -> dict[str, object]:
    return {
        "device_id": dev,
        "family": "streetlight",
        "district": "central",
        "ts": ts,
        "received_at": ts,
        "late": False,
        "power_state": "on",
        "power_w": 0.0,
        "current_a": 0.0,
    }


async def test_switched_off_lamp_is_not_out(stack_settings: Settings, spawn, rid: str) -> None:
    readings = f"citywatch.readings.test-{rid}"
    commands = f"citywatch.commands.test-{rid}"
    await create_topic(stack_settings, readings)
    await create_topic(stack_settings, commands, partitions=3)
    s = stack_settings.model_copy(
        update={
            "kafka": stack_settings.kafka.model_copy(
                update={"readings_topic": readings, "commands_topic": commands}
            )
        }
    )
    t0 = _night_start()
    off, dark = f"lamp-{rid}-off", f"lamp-{rid}-dark"
    cmd = Command(
        id=f"cmd-{rid}",
        kind="switch",
        params={"state": "off"},
        target_type="device",
        target=off,
        district="central",
        issuer="ops",
        role="operator",
        created_at=t0 / S - 60,
        expires_at=t0 / S + 600,
    )
    p = AIOKafkaProducer(**client_kwargs(s), acks="all")
    await p.start()
    try:
        await (await p.send(commands, command_record(cmd), key=cmd.key))
    finally:
        await p.stop()
    try:
        env = {
            "CITYWATCH_PROCESSOR__GROUP_ID": f"citywatch-test-{rid}",
            "CITYWATCH_KAFKA__READINGS_TOPIC": readings,
            "CITYWATCH_KAFKA__COMMANDS_TOPIC": commands,
        }
        proc = spawn("process", "--instance", f"p-{rid}", env=env, name="processor")
        wait_log(proc, "processor p-")
        await produce_records(
            s, [_lamp(dev, t0 + k * 5 * MIN) for k in range(8) for dev in (off, dark)]
        )

        def raised(dev: str) -> list[list[object]]:
            return influx_query(
                s,
                "SELECT alert_id FROM alerts WHERE state = 'raised' "
                f"AND kind = 'lamp_out' AND target = '{dev}'",
            )

        # The uncommanded lamp is judged out: the processor has judged both lamps' readings.
        assert wait_for(lambda: raised(dark), timeout_s=90)
        count = influx_query(s, f"SELECT count(power_w) FROM streetlight WHERE device_id = '{off}'")
        assert count and count[0][1] == 8
        assert raised(off) == []
    finally:
        await delete_topic(stack_settings, readings)
        await delete_topic(stack_settings, commands)
