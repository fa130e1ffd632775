"""The lean QoS 1 publisher and the paced publish loop, against an in-process fake broker."""

from __future__ import annotations

import asyncio
import itertools
import struct
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import SecretStr

from citywatch.settings import MqttSettings, Settings
from ingest.simulator.config import SimConfig
from ingest.simulator.engine import Simulation
from ingest.simulator.ledger import Ledger, RangeSet
from ingest.simulator.mqttpub import FastPublisher, MqttError, publish_packet
from ingest.simulator.publisher import publish

START = datetime(2024, 11, 20, 16, tzinfo=timezone(timedelta(hours=8))).timestamp()


class FakeBroker:
    """Just enough MQTT 3.1.1: CONNACK, PUBACK (optionally withheld), PINGRESP."""

    def __init__(self, password: str = "pw", cut_after: int | None = None) -> None:
        self.password = password
        self.cut_after = cut_after  # close the first connection after this many publishes
        self.publishes: list[tuple[str, bytes, bool, int]] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()

    async def _packet(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = (await reader.readexactly(1))[0]
        length, mult = 0, 1
        while True:
            b = (await reader.readexactly(1))[0]
            length += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        return head, await reader.readexactly(length)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first = self.connections == 1
        seen = 0
        try:
            while True:
                head, body = await self._packet(reader)
                kind = head >> 4
                if kind == 1:
                    ok = self.password.encode() in body
                    writer.write(bytes([0x20, 2, 0, 0 if ok else 5]))
                elif kind == 3:
                    (tlen,) = struct.unpack_from(">H", body)
                    topic = body[2 : 2 + tlen].decode()
                    (pid,) = struct.unpack_from(">H", body, 2 + tlen)
                    self.publishes.append((topic, body[4 + tlen :], bool(head & 0x08), pid))
                    seen += 1
                    if first and self.cut_after is not None and seen >= self.cut_after:
                        writer.close()
                        return
                    writer.write(bytes([0x40, 2]) + struct.pack(">H", pid))
                elif kind == 12:
                    writer.write(b"\xd0\x00")
                elif kind == 14:
                    writer.close()
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


async def test_publishes_within_the_window_and_acks_each_once() -> None:
    broker = FakeBroker()
    port = await broker.start()
    acks: Counter[int] = Counter()
    pub = FastPublisher("127.0.0.1", port, "t1", "simulator", "pw",
                        on_ack=lambda tok, ok: acks.update([tok]), window=50)  # fmt: skip
    await pub.connect()
    most = 0
    for i in range(3000):
        await pub.wait_window()
        pub.publish(f"city/central/bin/bin-{i % 7:04d}/up", b"x" * (i % 300), token=i)
        most = max(most, len(pub.inflight))
    assert await pub.drain(5.0)
    await pub.close()
    await broker.stop()
    assert most <= 50
    assert acks == Counter(range(3000))
    assert [len(p) for _, p, _, _ in broker.publishes] == [i % 300 for i in range(3000)]


async def test_resends_unacked_messages_after_a_lost_connection() -> None:
    broker = FakeBroker(cut_after=40)
    port = await broker.start()
    acks: list[int] = []
    pub = FastPublisher("127.0.0.1", port, "t2", "simulator", "pw",
                        on_ack=lambda tok, ok: acks.append(tok), window=100)  # fmt: skip
    await pub.connect()
    for i in range(200):
        await pub.wait_window()
        pub.publish("city/central/bin/bin-0001/up", str(i).encode(), token=i)
    assert await pub.drain(10.0)
    await pub.close()
    await broker.stop()
    assert sorted(acks) == list(range(200))  # every message acked exactly once
    assert broker.connections == 2 and pub.reconnects == 1
    assert any(dup for _, _, dup, _ in broker.publishes)


async def test_refused_credentials_raise() -> None:
    broker = FakeBroker(password="other")
    port = await broker.start()
    pub = FastPublisher("127.0.0.1", port, "t3", "simulator", "pw", on_ack=lambda t, ok: None)
    with pytest.raises(MqttError, match="refused"):
        await pub.connect()
    await broker.stop()


def test_publish_packet_layout() -> None:
    pkt = publish_packet(b"a/b", b"hi", 7, dup=True)
    assert pkt == bytes([0x3A, 9]) + b"\x00\x03a/b\x00\x07hi"
    long = publish_packet(b"t", b"x" * 200, 1)
    assert long[1:3] == bytes([0x80 | (205 % 128), 205 // 128])


def settings_for(port: int, tmp_path: Path) -> Settings:
    return Settings(
        mqtt=MqttSettings(host="127.0.0.1", port=port),
        state_dir=tmp_path,
        passwords={"simulator": SecretStr("pw")},
    )


async def test_publish_loop_fills_the_ledger(tmp_path: Path) -> None:
    broker = FakeBroker()
    port = await broker.start()
    sim = Simulation(SimConfig(seed=2, start=START, sim_seconds=900, transport_rate=0.01))
    res = await publish(sim, settings_for(port, tmp_path), speed=0.0, window=200)
    await broker.stop()
    led = res.ledger
    sent = list(Simulation(SimConfig(seed=2, start=START, sim_seconds=900,
                                     transport_rate=0.01)).messages())  # fmt: skip
    assert res.drained and led.counts["messages_acked"] == len(sent) == len(broker.publishes)
    keys = {k for m in sent for k in m.readings}
    assert led.readings_acked == len(keys)
    assert all(seq in led.acked[d] for d, seq in keys)
    assert sum(led.malformed_by_reason.values()) == sum(1 for m in sent if m.kind == "malformed")
    path = tmp_path / "ledger.json"
    led.save(path)
    back = Ledger.load(path)
    assert back.readings_acked == led.readings_acked and back.meta["seed"] == 2


async def test_publish_loop_follows_the_simulated_clock(tmp_path: Path) -> None:
    broker = FakeBroker()
    port = await broker.start()
    sim = Simulation(SimConfig(seed=2, start=START, sim_seconds=600, presence=False))
    t = time.monotonic()
    res = await publish(sim, settings_for(port, tmp_path), speed=1200.0)
    wall = time.monotonic() - t
    await broker.stop()
    assert 0.4 <= wall < 5.0  # 600 simulated seconds at 1200x = 0.5 s
    assert res.ledger.counts["messages_acked"] == len(broker.publishes)


async def test_wall_limit_stops_a_simulator_that_falls_behind(tmp_path: Path) -> None:
    broker = FakeBroker()
    port = await broker.start()
    # 2 simulated hours at 60x would take 2 minutes; the limit ends it after ~0.3 s.
    sim = Simulation(SimConfig(seed=2, start=START, sim_seconds=7200, presence=False))
    t = time.monotonic()
    res = await publish(sim, settings_for(port, tmp_path), speed=60.0, wall_limit_s=0.3)
    wall = time.monotonic() - t
    await broker.stop()
    assert wall < 5.0
    assert res.drained and res.ledger.counts["messages_acked"] == len(broker.publishes) > 0
    stopped = datetime.fromisoformat(res.ledger.meta["stopped_at"]).timestamp()
    assert START < stopped < START + 7200


def test_rangeset_matches_a_plain_set() -> None:
    import random

    rng = random.Random(1)
    for _ in range(300):
        xs = [rng.randint(0, 60) for _ in range(rng.randint(0, 80))]
        r = RangeSet()
        for x in xs:
            r.add(x)
        assert list(r) == sorted(set(xs))
        assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(r.ranges))
        other = RangeSet()
        ys = [rng.randint(0, 60) for _ in range(30)]
        for y in ys:
            other.add(y)
        assert r.count_in(other) == len(set(xs) & set(ys))
        assert r.missing_from(other, 5) == sorted(set(xs) - set(ys))[:5]
