"""The gateway's per-message counts are plain integers, exposed under the usual names."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from citywatch.settings import Settings
from ingest.gateway import Gateway, Inbound
from ingest.metrics import GatewayMetrics


def _value(m: GatewayMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_counts_reach_the_exposition_under_their_names() -> None:
    m = GatewayMetrics()
    m.messages = lambda: 5
    m.received("bin", 4)
    m.received("vehicle")
    m.forwarded("bin", 4)
    m.dead("bad_json")
    m.inflight = lambda: 7
    assert _value(m, "citywatch_gateway_mqtt_messages_total") == 5.0
    assert _value(m, "citywatch_gateway_readings_received_total", family="bin") == 4.0
    assert _value(m, "citywatch_gateway_readings_received_total", family="vehicle") == 1.0
    assert _value(m, "citywatch_gateway_readings_forwarded_total", family="bin") == 4.0
    assert _value(m, "citywatch_gateway_readings_forwarded_total", family="vehicle") is None
    assert _value(m, "citywatch_gateway_deadlettered_total", reason="bad_json") == 1.0
    assert _value(m, "citywatch_gateway_inflight") == 7.0
    text = generate_latest(m.registry).decode()
    assert 'citywatch_gateway_readings_forwarded_total{family="bin"} 4.0' in text


def test_latency_histogram_is_cumulative_with_le_bounds_inclusive() -> None:
    m = GatewayMetrics()
    for s in (0.001, 0.002, 0.003, 0.5, 30.0):
        m.produce_latency(s)
    name = "citywatch_gateway_produce_seconds_bucket"
    assert _value(m, name, le="0.002") == 2.0  # 0.002 itself counts as <= 0.002
    assert _value(m, name, le="0.005") == 3.0
    assert _value(m, name, le="0.5") == 4.0
    assert _value(m, name, le="10.0") == 4.0
    assert _value(m, name, le="+Inf") == 5.0
    assert _value(m, "citywatch_gateway_produce_seconds_count") == 5.0
    assert _value(m, "citywatch_gateway_produce_seconds_sum") == pytest.approx(30.506)


async def test_one_kafka_batch_acks_every_message_waiting_for_it_in_order(
    tmp_path: Path,
) -> None:
    g = Gateway(Settings(state_dir=tmp_path), "t1")
    acked: list[int] = []
    g._ack = lambda item: acked.append(item.mid)  # type: ignore[method-assign]
    batch: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    other: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    # Message 3 also waits for a second batch (a reading and a dead letter, say).
    plan = {1: [batch], 2: [batch], 3: [batch, other]}
    g._send_records = lambda item: (plan[item.mid], "bin", 1)  # type: ignore[method-assign]
    for mid in plan:
        g._forward(Inbound(mid, 1, "city/d1/bin/b1/up", b"{}", 0))
    assert g.metrics.inflight() == 3 and len(batch._callbacks or []) == 1  # type: ignore[attr-defined]
    batch.set_result(None)
    await asyncio.sleep(0)
    assert acked == [1, 2] and g.metrics.inflight() == 1
    other.set_result(None)
    await asyncio.sleep(0)
    assert acked == [1, 2, 3] and g.metrics.inflight() == 0 and not g._waiting
    assert g.metrics.forwarded_by == {"bin": 3}
