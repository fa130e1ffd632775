"""The MQTT -> Kafka gateway: validate and decode, forward, and acknowledge only once stored.

Each MQTT message (QoS 1, manual ack) is acknowledged only after Kafka acknowledged all its
records (readings and dead letters) or, while Kafka is unreachable, after the raw message was
fsync'ed to the local spool (ingest.spool), which is drained into Kafka when Kafka is back.
So a crash anywhere between receive and store loses nothing: the broker redelivers what was
not acknowledged. Memory stays bounded: past ``queue_max`` waiting messages the MQTT socket is
no longer read, which slows the broker rather than growing a queue here.

Several gateways share the load through the MQTT 5 shared subscription ``$share/<group>/...``
(``gateway.subscription = "shared"``) or through disjoint topic filters (``"exclusive"``,
the default, which unlike shared subscriptions on Mosquitto 2.0.11 survives broker restarts).

Example:
    $ citywatch gateway --instance gw1
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from citywatch import native
from citywatch.backoff import retry
from citywatch.mqttlean import LeanSubscriber
from citywatch.security.devices import DevicePolicy
from citywatch.security.endpoint import mqtt_kwargs
from citywatch.settings import Settings, gateway_client_id
from ingest import broker_health
from ingest.broker_health import BrokerHealth
from ingest.decode import decode_message
from ingest.kafka_sink import KafkaSink
from ingest.metrics import GatewayMetrics
from ingest.registry import DeviceRegistry
from ingest.spool import Spool, SpoolFull, SpoolRecord

log = logging.getLogger("citywatch.gateway")


class Mode(Enum):
    DIRECT = "direct"  # straight to Kafka, ack on Kafka ack
    SPOOL = "spool"  # Kafka unreachable: ack on fsync to the spool, drain later


@dataclass(slots=True)
class Inbound:
    mid: int
    qos: int
    topic: str
    payload: bytes
    received_at_ns: int


@dataclass(slots=True)
class _Pending:
    item: Inbound
    remaining: int
    # Readings of one message: the topic fixes their family (decode refuses any other).
    family: str = ""
    readings: int = 0
    failed: bool = False
    t0: float = field(default_factory=time.monotonic)


class Gateway:
    """One gateway process; ``run`` until ``stop`` is set (SIGTERM/SIGINT set it)."""

    def __init__(self, settings: Settings, instance: str | None = None) -> None:
        self.s = settings
        g = settings.gateway
        self.instance = instance or g.instance
        self.client_id = gateway_client_id(self.instance)
        self.metrics = GatewayMetrics()
        self.metrics.inflight = lambda: len(self._pending)
        self.metrics.messages = lambda: self.stats["messages"]
        self.broker = BrokerHealth(self.metrics.registry)
        self.registry = DeviceRegistry.load(g.device_registry)
        # security.unknown_devices: accept (and remember) or dead-letter unregistered ids.
        self.devices = DevicePolicy(settings)
        self.sink = KafkaSink(settings, client_id=self.client_id)
        self.spool = Spool(
            settings.state_dir / "spool" / self.instance, g.spool_segment_bytes, g.spool_max_bytes
        )
        self.mode = Mode.SPOOL if not self.spool.empty else Mode.DIRECT
        self.inbox: asyncio.Queue[Inbound] = asyncio.Queue()
        self.high, self.low = g.queue_max, g.queue_max // 2
        self._pending: dict[int, _Pending] = {}
        # Kafka batch future -> keys of the messages waiting for it: one done-callback per
        # batch rather than one per message (each is a loop handle when the batch completes).
        self._waiting: dict[asyncio.Future[object], list[int]] = {}
        self._next = 0
        self._kafka_ready = asyncio.Event()
        self._kafka_task: asyncio.Task[None] | None = None
        self.mqtt = LeanSubscriber(
            **mqtt_kwargs(settings, "gateway"),
            client_id=self.client_id,
            on_message=self._on_message,
            clean_start=False,  # persistent session: the broker keeps what we did not ack
            session_expiry_s=g.session_expiry_s,
            receive_maximum=g.receive_maximum,
            keepalive_s=settings.mqtt.keepalive_s,
        )
        self.stats = {"messages": 0, "readings": 0, "dead": 0, "spooled": 0, "drained": 0}

    # -- MQTT in ---------------------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes, qos: int, mid: int) -> None:
        if topic[0] == "$":  # the broker's own counters (QoS 0, nothing to ack)
            self.broker.on_message(topic, payload)
            return
        self.inbox.put_nowait(Inbound(mid, qos, topic, payload, time.time_ns()))
        if self.held() >= self.high:
            self.mqtt.pause_reading()

    def held(self) -> int:
        """Messages taken from the broker and not yet acknowledged: queued or awaiting Kafka.

        Bounded here (``gateway.queue_max``), not only by the Receive Maximum we announce:
        Mosquitto 2.0.11 (Debian 12) does not keep to it once acknowledgements flow (measured:
        722 unacknowledged with a Receive Maximum of 20; 91,000 in the gateway at 12,500
        readings/s with 4,000, +150 MiB RSS), so a backlog would collect in the gateway's memory
        instead of the broker's queue. tests/integration/test_broker_receive_maximum.py pins it.
        """
        return self.inbox.qsize() + len(self._pending)

    def _maybe_resume(self) -> None:
        if self.mqtt.paused and self.held() <= self.low:
            self.mqtt.resume_reading()

    def _ack(self, item: Inbound) -> None:
        if item.qos > 0:
            self.mqtt.ack(item.mid, item.qos)

    # -- forwarding ------------------------------------------------------------------
    def _forward(self, item: Inbound) -> None:
        """Decode and send one message's records; the ack follows the last Kafka ack."""
        futs, family, n = self._send_records(item)
        # Records of one message usually share a batch, hence one future: count each once.
        futs = list(dict.fromkeys(futs))
        key = self._next
        self._next += 1
        self._pending[key] = _Pending(item, len(futs), family, n)
        waiting = self._waiting
        for fut in futs:
            keys = waiting.get(fut)
            if keys is None:
                keys = waiting[fut] = []
                fut.add_done_callback(self._batch_done)
            keys.append(key)

    def _send_records(self, item: Inbound) -> tuple[list[asyncio.Future[object]], str, int]:
        """Send a message's readings and rejects: their futures, family and reading count."""
        topic = item.topic
        rat = item.received_at_ns
        if topic.endswith("/status"):
            return self._send_presence(item), "", 0
        received_at = datetime.fromtimestamp(rat / 1e9, UTC)
        res = decode_message(
            topic,
            item.payload,
            received_at,
            max_payload_bytes=self.s.gateway.max_payload_bytes,
            allow_device=self.devices.allows,
        )
        futs: list[asyncio.Future[object]] = []
        lamps = self.registry.lamps
        for reading in res.readings:
            if lamps and reading.family == "streetlight" and reading.circuit_id is None:
                known = lamps.get(reading.device_id)
                if known is not None:
                    reading.circuit_id, reading.cabinet_id = known
            futs.append(self.sink.send_reading(reading))
        for rej in res.rejects:
            futs.append(self.sink.send_deadletter(item.payload, topic, rej.reason, rej.detail, rat))
            self.metrics.dead(rej.reason)
            self.stats["dead"] += 1
        family = ""
        if res.readings:
            family = res.readings[0].family
            self.metrics.received(family, len(res.readings))
        return futs, family, len(res.readings)

    def _send_presence(self, item: Inbound) -> list[asyncio.Future[object]]:
        parts = item.topic.split("/")
        status = item.payload.decode("utf-8", "replace").strip().strip('"').lower()
        if len(parts) != 5 or parts[0] != "city" or status not in ("online", "offline"):
            self.metrics.dead("bad_presence")
            return [
                self.sink.send_deadletter(
                    item.payload,
                    item.topic,
                    "bad_presence",
                    "expected online/offline",
                    item.received_at_ns,
                )
            ]
        _, district, family, device_id, _ = parts
        return [self.sink.send_presence(device_id, family, district, status, item.received_at_ns)]

    def _batch_done(self, fut: asyncio.Future[object]) -> None:
        for key in self._waiting.pop(fut, ()):
            self._record_done(key, fut)

    def _record_done(self, key: int, fut: asyncio.Future[object]) -> None:
        pend = self._pending.get(key)
        if pend is None:
            return
        if fut.cancelled() or fut.exception() is not None:
            pend.failed = True
        pend.remaining -= 1
        if pend.remaining > 0:
            return
        del self._pending[key]
        self._maybe_resume()  # a Kafka ack may be what the paused socket waits for
        if pend.failed:
            # Kafka did not take it: keep it on disk, ack after fsync, forward later.
            self._enter_spool_mode("a Kafka send failed")
            self._spool(pend.item)
            return
        self._ack(pend.item)
        self.metrics.produce_latency(time.monotonic() - pend.t0)
        if pend.readings:
            self.stats["readings"] += pend.readings
            self.metrics.forwarded(pend.family, pend.readings)

    # -- spool -----------------------------------------------------------------------
    def _enter_spool_mode(self, why: str) -> None:
        if self.mode is Mode.DIRECT:
            log.warning("Kafka unavailable (%s): spooling to %s", why, self.spool.dir)
            self.mode = Mode.SPOOL

    def _spool(self, item: Inbound) -> None:
        try:
            fut = self.spool.append_nowait(
                SpoolRecord(item.topic, item.payload, item.received_at_ns)
            )
        except SpoolFull as exc:
            # Last resort: leave it unacknowledged; the broker keeps it in our session.
            log.error("%s; leaving message unacknowledged", exc)
            self.mqtt.pause_reading()
            return
        self.stats["spooled"] += 1
        self.metrics.spooled.inc()
        fut.add_done_callback(lambda f: None if f.exception() else self._ack(item))

    async def _drain(self, stop: asyncio.Event) -> None:
        """Forward spooled messages to Kafka, oldest first; back to DIRECT when empty."""
        backoff = 0.2
        while not stop.is_set() or not self.spool.empty:
            self.metrics.spool_bytes.set(self.spool.bytes_on_disk)
            if self.spool.empty:
                if self.mode is Mode.SPOOL and not self._pending:
                    log.warning("spool drained; forwarding directly again")
                    self.mode = Mode.DIRECT
                if stop.is_set():
                    return
                await asyncio.sleep(0.1)
                continue
            await self._kafka_ready.wait()
            recs, pos = await self.spool.read(2000)
            if not recs:
                await asyncio.sleep(0.05)
                continue
            try:
                futs: list[asyncio.Future[object]] = []
                sent: Counter[str] = Counter()
                for rec in recs:
                    item = Inbound(0, 0, rec.topic, rec.payload, rec.received_at_ns)
                    f, family, n = self._send_records(item)
                    futs.extend(f)
                    if n:
                        sent[family] += n
                await asyncio.wait_for(
                    asyncio.gather(*futs), self.s.gateway.request_timeout_ms / 1000 + 5
                )
                for family, n in sent.items():
                    self.metrics.forwarded(family, n)
                n_readings = sum(sent.values())
            except Exception as exc:
                log.warning("spool drain paused: %r", exc)
                # An idempotent producer whose batches expired during the outage is left with
                # a sequence gap (OutOfOrderSequenceNumber) it cannot recover from: start a
                # fresh producer (new producer id) before retrying the same batch.
                await self._reset_kafka(stop)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            await self.spool.commit(pos)
            self.stats["drained"] += len(recs)
            self.stats["readings"] += n_readings

    # -- loops -----------------------------------------------------------------------
    async def _work(self) -> None:
        inbox = self.inbox
        nap_s = self.s.gateway.nap_ms / 1000
        while True:
            self._handle(await inbox.get())
            # Take what is already queued without a suspension per message; yield now and
            # then so the socket, timers and Kafka acks keep flowing.
            n = min(inbox.qsize(), 500)
            for _ in range(n):
                self._handle(inbox.get_nowait())
            if nap_s > 0 and n < self.s.gateway.nap_below:
                # Light load: a wake-up per packet or two. Let packets gather in the socket
                # for a moment (acks wait as long; the broker's window is thousands).
                await self.mqtt.nap(nap_s)

    def _handle(self, item: Inbound) -> None:
        self._maybe_resume()
        self.stats["messages"] += 1
        if self.mode is Mode.SPOOL or not self._kafka_ready.is_set():
            self._spool(item)
            return
        try:
            self._forward(item)
        except Exception as exc:
            self._enter_spool_mode(repr(exc))
            self._spool(item)

    async def _watchdog(self) -> None:
        stall = self.s.gateway.kafka_stall_s
        while True:
            await asyncio.sleep(0.25)
            if self._pending and time.monotonic() - next(iter(self._pending.values())).t0 > stall:
                self._enter_spool_mode(f"no Kafka ack for {stall:.0f}s")

    async def _reset_kafka(self, stop: asyncio.Event) -> None:
        self._kafka_ready.clear()
        self._enter_spool_mode("producer reset")
        # Whatever the old producer still holds may never be acknowledged: spool it now
        # (a late ack of the same records only makes duplicates, which are merged downstream).
        stranded, self._pending = self._pending, {}
        self._waiting.clear()  # the old producer's futures may never complete
        for pend in stranded.values():
            self._spool(pend.item)
        old = self.sink
        self.sink = KafkaSink(self.s, client_id=self.client_id)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.stop(), 5)
        self._kafka_task = asyncio.create_task(self._start_kafka(stop))

    async def _start_kafka(self, stop: asyncio.Event) -> None:
        """Start a producer, waiting for Kafka (readings are spooled meanwhile)."""

        async def attempt() -> None:
            try:
                await self.sink.start()
            except Exception:
                # A producer whose start failed cannot be started again: the next try
                # gets a fresh one.
                with contextlib.suppress(Exception):
                    await self.sink.stop()
                self.sink = KafkaSink(self.s, client_id=self.client_id)
                raise
            self._kafka_ready.set()

        with contextlib.suppress(Exception):  # raised only once stopping: nothing to start
            await retry(
                attempt,
                Exception,
                what="Kafka start (spooling)",
                log=log,
                stop=stop,
                first_s=0.5,
                max_s=5.0,
            )

    async def _connect_mqtt(self, stop: asyncio.Event) -> None:
        """Connect (subscribing on CONNACK), waiting for a broker that is not up yet."""
        with contextlib.suppress(ConnectionError, TimeoutError):  # raised only once stopping
            await retry(
                self.mqtt.connect,
                (ConnectionError, TimeoutError),
                what="MQTT connect",
                log=log,
                stop=stop,
                first_s=0.5,
                max_s=5.0,
            )

    async def run(self, stop: asyncio.Event) -> dict[str, int]:
        g = self.s.gateway
        self._kafka_task = asyncio.create_task(self._start_kafka(stop))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._kafka_ready.wait()), 10)
        share = f"$share/{g.share_group}/" if g.subscription == "shared" else ""
        await self.mqtt.subscribe(
            [(share + g.uplink_filter, 1), (share + g.status_filter, 1)]
            + [(t, 0) for t in broker_health.TOPICS]
        )
        await self._connect_mqtt(stop)
        worker = asyncio.create_task(self._work())
        watchdog = asyncio.create_task(self._watchdog())
        drain_stop = asyncio.Event()
        drainer = asyncio.create_task(self._drain(drain_stop))
        log.info(
            "gateway %s up (mode %s; decoders: %s)",
            self.instance,
            self.mode.value,
            "compiled modules" if native.active("ingest.decode") else "pure Python",
        )
        await stop.wait()
        # Shutdown: take nothing new, finish what was received, then leave.
        self.mqtt.pause_reading()
        deadline = time.monotonic() + 20
        while (self.inbox.qsize() or self._pending) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        watchdog.cancel()
        worker.cancel()
        drain_stop.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(drainer, 10 if self._kafka_ready.is_set() else 0.1)
        drainer.cancel()
        if self._kafka_task is not None:
            self._kafka_task.cancel()
        await self.spool.close()
        await asyncio.sleep(0.05)  # let the last PUBACKs leave the socket
        await self.mqtt.close()
        with contextlib.suppress(Exception):
            await self.sink.stop()
        return {**self.stats, "broker_dropped": self.broker.dropped_seen}


async def serve(settings: Settings, instance: str | None = None) -> dict[str, int]:
    """Run a gateway until SIGTERM/SIGINT; returns its counters."""
    gw = Gateway(settings, instance)
    gw.metrics.serve(settings.gateway.metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await gw.run(stop)
