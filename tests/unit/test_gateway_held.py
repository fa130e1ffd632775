"""The gateway bounds what it holds (queued plus awaiting Kafka), not only its inbox."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import pytest

from citywatch.settings import Settings
from ingest.gateway import Gateway, Inbound, _Pending


class _Mqtt:
    def __init__(self) -> None:
        self.paused = False
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.paused = True
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.paused = False
        self.calls.append("resume")

    def ack(self, mid: int, qos: int) -> None:
        self.calls.append(f"ack {mid}")


@pytest.fixture
async def gw(tmp_path: Path) -> Gateway:
    s = Settings(state_dir=tmp_path)
    s.gateway.queue_max = 10
    g = Gateway(s, "t1")
    g.mqtt = _Mqtt()  # type: ignore[assignment]
    return g


def _awaiting(g: Gateway, n: int) -> list[asyncio.Future[object]]:
    futs: list[asyncio.Future[object]] = []
    for i in range(n):
        item = Inbound(i + 1, 1, "city/d1/bin/b1/up", b"{}", 0)
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        g._pending[i] = _Pending(item, 1)
        fut.add_done_callback(functools.partial(g._record_done, i))
        futs.append(fut)
    return futs


async def test_messages_awaiting_kafka_count_towards_the_pause(gw: Gateway) -> None:
    _awaiting(gw, 9)
    gw._on_message("city/d1/bin/b2/up", b"{}", 1, 99)
    # One queued message plus nine awaiting Kafka's ack: the limit, with an empty-ish inbox.
    assert gw.held() == 10 and gw.mqtt.paused


async def test_kafka_acks_alone_resume_reading_at_half(gw: Gateway) -> None:
    futs = _awaiting(gw, 10)
    gw._on_message("city/d1/bin/b2/up", b"{}", 1, 99)
    assert gw.mqtt.paused
    for fut in futs[:5]:
        fut.set_result(None)
    await asyncio.sleep(0)
    assert gw.mqtt.paused  # 6 held: above half of 10
    futs[5].set_result(None)
    await asyncio.sleep(0)
    # No new message arrives while paused: the ack that brings it to half resumes reading.
    assert not gw.mqtt.paused and gw.held() == 5
    assert [c for c in gw.mqtt.calls if c.startswith("ack")] == [f"ack {i}" for i in range(1, 7)]
