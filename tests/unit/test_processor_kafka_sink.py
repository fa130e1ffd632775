"""The processor's Kafka sink with a fake producer: what it sends, skips and retries."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from citywatch.settings import Settings
from processors.alerts import AlertEvent
from processors.sinks.kafka import KafkaSink


class FakeProducer:
    """Records what was sent; the first ``fail`` sends raise as if Kafka were away."""

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.fail = fail

    async def send(
        self, topic: str, value: bytes, key: bytes, headers: Any
    ) -> asyncio.Future[None]:
        if self.fail:
            self.fail -= 1
            raise KafkaConnectionError("broker away")
        self.sent.append((topic, value, key, headers))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def _sink(producer: FakeProducer) -> KafkaSink:
    sink = KafkaSink(Settings(), "p-test")
    sink.producer = producer  # type: ignore[assignment]
    return sink


def _event(alert_id: str, state: str = "raised", ts: int = 10) -> AlertEvent:
    return AlertEvent(alert_id, "bin_overflow", "bin-1", "device", "bin", "north", "warning",
                      state, 5, ts, "bin 95 % full")  # fmt: skip


async def test_publish_sends_each_event_once_keyed_by_alert_id() -> None:
    s = Settings()
    fake = FakeProducer()
    sink = _sink(fake)
    stop = asyncio.Event()
    sink.published.add(("a0", "raised", 10))  # a replay raises it again: already on the topic
    events = [_event("a0"), _event("a1"), _event("a1", "cleared", 20)]
    assert await sink.publish(events, stop) == 1
    assert [(t, k) for t, _, k, _ in fake.sent] == [(s.kafka.alerts_topic, b"a1")] * 2
    assert fake.sent[0][3] == [("group", s.processor.group_id.encode())]
    assert await sink.publish(events, stop) == 3  # all three on the topic now
    assert len(fake.sent) == 2


async def test_dead_letter_keeps_the_line_and_influxdbs_reason() -> None:
    fake = FakeProducer()
    await _sink(fake).dead_letter([("bin x=", "unable to parse")], asyncio.Event())
    [(topic, value, key, headers)] = fake.sent
    assert topic == Settings().kafka.deadletter_topic and value == b"bin x=" and key == b"influx"
    assert dict(headers) == {
        "reason": b"influx_rejected",
        "detail": b"unable to parse",
        "origin": b"processor",
    }


async def test_send_retries_while_kafka_is_away_and_gives_up_once_stopping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr("citywatch.backoff.asyncio.sleep", no_wait)  # the retry waits
    fake = FakeProducer(fail=3)
    await _sink(fake).publish([_event("a1")], asyncio.Event())
    assert [k for _, _, k, _ in fake.sent] == [b"a1"] and fake.fail == 0

    stopping = asyncio.Event()
    stopping.set()
    with pytest.raises(KafkaConnectionError):
        await _sink(FakeProducer(fail=1)).publish([_event("a2")], stopping)


async def test_publish_writes_each_episode_to_the_open_alerts_topic_and_clears_it() -> None:
    s = Settings()
    fake = FakeProducer()
    sink = _sink(fake)
    sink.open_alerts = True
    await sink.publish([_event("a1"), _event("a1", "cleared", 20)], asyncio.Event())
    open_key = f"{s.processor.group_id}|bin_overflow|bin-1".encode()
    assert [(t, k, v is None) for t, v, k, _ in fake.sent] == [
        (s.kafka.alerts_topic, b"a1", False),
        (s.kafka.open_alerts_topic, open_key, False),
        (s.kafka.alerts_topic, b"a1", False),
        (s.kafka.open_alerts_topic, open_key, True),  # cleared: a tombstone
    ]
