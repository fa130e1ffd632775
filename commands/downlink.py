"""``citywatch downlink``: deliver commands to devices over MQTT and track them to their effect.

One asyncio process:

- consumes ``citywatch.commands`` (group ``commands.group_id``); a record is only a trigger:
  the command must be in the command store (where the API/CLI put it after the policy
  check), so nothing written straight to Kafka reaches a lamp. Expired commands are marked
  ``expired`` and never sent; others are expanded to one delivery per device;
- publishes ``{"cmd_id", "device_id", "kind", "params", "expires_at", "attempt"}`` to
  ``city/{district}/{family}/{publisher}/down`` (QoS 1) and resends with exponential backoff
  (``ack_timeout_s`` · 2^n, capped) until the device acknowledges on ``…/ack``, at most
  ``max_attempts`` times;
- holds deliveries for devices whose last presence (``citywatch.presence``, compacted, read
  from the start) is ``offline``, and sends them as soon as the device is back online;
- confirms the effect from the device's next reading on ``citywatch.readings`` (its own
  consumer group; records are filtered by Kafka key before they are parsed);
- records alert events that carry a ``suggested_command`` as pending suggestions (a person
  confirms them through the API or CLI).

Run one instance per deployment: deliveries in flight are kept in memory (and in the store,
so a restart resumes them).

Example:
    $ citywatch downlink --log-level INFO
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError
from paho.mqtt.client import MQTTMessage

from citywatch.backoff import retry
from citywatch.kafkautil import client_kwargs
from citywatch.mqtt import AsyncMqtt
from citywatch.security.endpoint import mqtt_kwargs
from citywatch.settings import Settings
from commands.model import (
    TERMINAL,
    Command,
    CommandError,
    Delivery,
    can_move,
    effect_seen,
    verified_on_ack,
)
from commands.store import Store, Suggestion, db_url
from commands.targets import Targets

log = logging.getLogger(__name__)

_OVERRIDES = frozenset({"switch", "dim", "schedule"})  # a newer one supersedes an older one


@dataclass(slots=True)
class _Open:
    cmd: Command
    d: Delivery
    waiting_logged: bool = False
    contradicting: set[Any] = field(default_factory=set)  # seqs of readings that said no


@dataclass
class DownlinkStats:
    commands: int = 0
    skipped: int = 0
    sent: int = 0
    acked: int = 0
    applied: int = 0
    failed: int = 0
    expired: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def down_payload(cmd: Command, d: Delivery) -> bytes:
    return orjson.dumps(
        {
            "cmd_id": cmd.id,
            "device_id": d.device_id,
            "kind": cmd.kind,
            "params": cmd.params,
            "expires_at": int(cmd.expires_at),
            "attempt": d.attempts,
        }
    )


class Downlink:
    def __init__(self, settings: Settings, store: Store, targets: Targets) -> None:
        self.s = settings
        self.cfg = settings.commands
        self.store = store
        self.targets = targets
        self.open: dict[tuple[str, str], _Open] = {}
        self.by_device: dict[str, dict[str, _Open]] = {}  # device -> cmd_id -> open delivery
        self.open_cmds: dict[str, int] = {}  # cmd_id -> open deliveries
        self.presence: dict[str, bool] = {}  # publisher id -> online; unknown = online
        self.dirty: list[tuple[Delivery, str | None]] = []
        self.stats = DownlinkStats()
        self.mqtt: AsyncMqtt | None = None
        self.ready = asyncio.Event()
        self.wake = asyncio.Event()  # something to send now: do not wait for the next tick
        self._watch_keys: set[bytes] = set()
        self._keys_stale = False

    # -- state changes (in memory first; flushed to the store once per tick) -------------
    def _move(self, o: _Open, state: str, detail: str = "", log_: str | None = None) -> None:
        d = o.d
        if d.state != state and not can_move(d.state, state):
            log.warning("ignored %s -> %s for %s/%s", d.state, state, d.cmd_id, d.device_id)
            return
        d.state = state  # type: ignore[assignment]
        if detail:
            d.detail = detail
        now = time.time()
        if state in TERMINAL:
            d.done_at = now
            self._forget(o)
            n = getattr(self.stats, state)
            setattr(self.stats, state, n + 1)
            log.info("command %s on %s: %s %s", d.cmd_id, d.device_id, state, detail)
        self.dirty.append((d.model_copy(), log_))

    def _track(self, o: _Open) -> None:
        self.open[(o.d.cmd_id, o.d.device_id)] = o
        self.by_device.setdefault(o.d.device_id, {})[o.d.cmd_id] = o
        self.open_cmds[o.d.cmd_id] = self.open_cmds.get(o.d.cmd_id, 0) + 1
        self._keys_stale = True

    def _forget(self, o: _Open) -> None:
        if self.open.pop((o.d.cmd_id, o.d.device_id), None) is not None:
            left = self.open_cmds.get(o.d.cmd_id, 1) - 1
            if left > 0:
                self.open_cmds[o.d.cmd_id] = left
            else:
                self.open_cmds.pop(o.d.cmd_id, None)
        mine = self.by_device.get(o.d.device_id)
        if mine is not None:
            mine.pop(o.d.cmd_id, None)
            if not mine:
                del self.by_device[o.d.device_id]
        # Watched keys are not rebuilt here: a key left over only costs a lookup, and the
        # next delivery sent rebuilds the set (a rebuild per applied lamp would be O(n^2)).

    def _reindex(self) -> None:
        # Rebuilt lazily (once per batch of readings), not on every state change: a
        # district-wide command changes thousands of deliveries at once.
        self._keys_stale = False
        keys: set[bytes] = set()
        for o in self.open.values():
            if o.d.state in ("sent", "acked"):
                keys.add(o.d.device_id.encode())
                dev = self.targets.city.devices.get(o.d.device_id)
                if dev is not None and dev.circuit_id:
                    # Streetlight readings are keyed by circuit on citywatch.readings
                    # (ingest.kafka_sink.partition_key: "circuit:<id>").
                    keys.add(f"circuit:{dev.circuit_id}".encode())
                    keys.add(dev.circuit_id.encode())
        self._watch_keys = keys

    async def flush(self) -> None:
        if self.dirty:
            batch, self.dirty = self.dirty, []
            await asyncio.to_thread(self.store.save_deliveries, batch)

    # -- commands ------------------------------------------------------------------------
    def load(self, raw: bytes) -> tuple[Command, list[Delivery]] | None:
        """Store side of one ``citywatch.commands`` record (blocking: run in a thread).

        Returns the command and its deliveries when it is to be delivered."""
        try:
            rec = Command.model_validate_json(raw)
        except ValueError as exc:
            log.error("unreadable command record skipped: %s", exc)
            self.stats.skipped += 1
            return None
        cmd = self.store.get(rec.id)
        if cmd is None:
            # Only commands that passed the policy (and are audited) are delivered.
            log.error("command %s is not in the command store: not delivered", rec.id)
            self.stats.skipped += 1
            return None
        if cmd.state in TERMINAL:
            return None  # a replayed record
        now = time.time()
        if cmd.expired(now):
            self.store.set_state(cmd.id, "expired", "expired before delivery")
            self.stats.expired += 1
            log.info("command %s expired before delivery", cmd.id)
            return None
        try:
            resolved = self.targets.resolve(cmd.target_type, cmd.target)
        except CommandError as exc:
            self.store.set_state(cmd.id, "failed", str(exc))
            return None
        planned = [
            Delivery(
                cmd_id=cmd.id,
                device_id=dev.id,
                publisher_id=dev.publisher_id,
                district=dev.district,
                family=dev.family,
                next_at=now,
            )
            for dev in resolved.devices
        ]
        return cmd, self.store.add_deliveries(cmd.id, planned)

    def register(self, cmd: Command, deliveries: list[Delivery]) -> None:
        """Loop side: track the open deliveries of a loaded command."""
        if cmd.id in self.open_cmds:
            return
        self.stats.commands += 1
        self.wake.set()
        for d in deliveries:
            if d.state not in TERMINAL:
                self._supersede(cmd, d.device_id)
                self._track(_Open(cmd, d))

    def _supersede(self, cmd: Command, device_id: str) -> None:
        if cmd.kind not in _OVERRIDES:
            return
        for o in list(self.by_device.get(device_id, {}).values()):
            if o.cmd.kind in _OVERRIDES and o.cmd.created_at <= cmd.created_at:
                self._move(o, "failed", f"superseded by command {cmd.id}")

    # -- MQTT ----------------------------------------------------------------------------
    def on_ack(self, msg: MQTTMessage) -> None:
        parts = msg.topic.split("/")
        try:
            body = orjson.loads(msg.payload)
            cmd_id = str(body["cmd_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("unreadable ack on %s: %r", msg.topic, msg.payload[:200])
            return
        device = str(body.get("device_id") or (parts[3] if len(parts) == 5 else ""))
        o = self.open.get((cmd_id, device))
        if o is None:
            return  # a late or duplicate ack for something already settled
        status = str(body.get("status", "ok"))
        if status != "ok":
            self._move(o, "failed", f"device refused: {status} {body.get('detail', '')}".strip())
            return
        if o.d.state == "sent":
            o.d.acked_at = time.time()
            self.stats.acked += 1
            self._move(o, "acked", log_=f"ack after attempt {o.d.attempts}")
            if verified_on_ack(o.cmd.kind):
                self._move(o, "applied", "acknowledged (nothing to see in a reading)")
            else:
                self._keys_stale = True

    def _send(self, o: _Open, now: float) -> None:
        assert self.mqtt is not None
        d = o.d
        d.attempts += 1
        d.sent_at = now
        backoff = min(self.cfg.ack_timeout_s * 2 ** (d.attempts - 1), self.cfg.ack_timeout_cap_s)
        d.next_at = now + backoff
        o.waiting_logged = False
        self.mqtt.publish_nowait(d.down_topic, down_payload(o.cmd, d), qos=1)
        self.stats.sent += 1
        self._move(o, "sent", log_=f"attempt {d.attempts} on {d.down_topic}")
        self._keys_stale = True

    def tick(self, now: float | None = None) -> None:
        """Expire, send, resend, give up: everything that is due."""
        now = time.time() if now is None else now
        cfg = self.cfg
        # While the broker is away nothing is sent, and no attempt is used up.
        online = self.mqtt is not None and self.mqtt.connected.is_set()
        for o in list(self.open.values()):
            d = o.d
            if o.cmd.expired(now):
                why = "expired before delivery"
                if d.state != "queued":
                    why = f"expired while {d.state}"
                self._move(o, "expired", why)
                continue
            if d.state == "acked":
                if d.acked_at is not None and now - d.acked_at > cfg.verify_timeout_s:
                    self._move(o, "failed", "no reading confirmed the effect")
                continue
            if now < d.next_at:
                continue
            if not online:
                continue
            if not self.presence.get(d.publisher_id, True):
                if not o.waiting_logged:
                    o.waiting_logged = True
                    self.dirty.append((d.model_copy(), "held: device offline"))
                continue
            if d.attempts >= cfg.max_attempts:
                self._move(o, "failed", f"no ack after {d.attempts} attempts")
                continue
            self._send(o, now)

    # -- Kafka inputs --------------------------------------------------------------------
    def on_presence(self, raw: bytes | None) -> None:
        if raw is None:
            return
        try:
            rec = orjson.loads(raw)
            dev, online = str(rec["device_id"]), rec["status"] == "online"
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        was = self.presence.get(dev, True)
        self.presence[dev] = online
        if online and not was:
            now = time.time()
            for o in self.open.values():
                if o.d.publisher_id == dev and o.d.state in ("queued", "sent"):
                    o.d.next_at = now  # send at once, without waiting for the backoff
                    self.wake.set()

    def on_reading(self, key: bytes | None, raw: bytes) -> None:
        if self._keys_stale:
            self._reindex()
        if key not in self._watch_keys:
            return
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        dev = rec.get("device_id")
        received = float(rec.get("received_at", 0)) / 1e9
        for o in list(self.by_device.get(str(dev), {}).values()):
            d = o.d
            if d.state != "acked" or d.acked_at is None or received < d.acked_at:
                continue
            seen = effect_seen(o.cmd.kind, o.cmd.params, rec)
            seq = rec.get("seq")
            if seen:
                self._move(o, "applied", f"reading seq {seq} shows it")
            elif seen is False:
                # A report made just before the command can arrive after the ack, and
                # at-least-once delivery repeats readings: count each reading once.
                if seq is not None and seq in o.contradicting:
                    continue
                o.contradicting.add(seq)
                d.mismatches += 1
                state = rec.get("power_state")
                if d.mismatches >= self.cfg.verify_mismatches:
                    self._move(o, "failed", f"device still reports power_state={state}")
                else:
                    self.dirty.append((d.model_copy(), f"reading shows power_state={state}"))

    def on_alert(self, raw: bytes) -> None:
        """Sync (store): pending suggestions from alert events; cleared alerts obsolete them."""
        try:
            ev = orjson.loads(raw)
            alert_id, state = str(ev["alert_id"]), str(ev["state"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if state == "cleared":
            self.store.decide_suggestion(alert_id, "obsolete", None)
            return
        text = ev.get("suggested_command")
        if not text:
            return
        self.store.upsert_suggestion(
            Suggestion(
                alert_id,
                str(text),
                str(ev.get("kind", "")),
                str(ev.get("target", "")),
                str(ev.get("district", "")),
                str(ev.get("severity", "")),
                float(ev.get("ts", 0)) / 1e9,
                "pending",
                None,
                None,
            )
        )


async def _wait_assigned(c: AIOKafkaConsumer, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not c.assignment() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    for tp in c.assignment():
        await c.position(tp)  # fixes the start offset now (auto_offset_reset=latest)


async def _consume(
    c: AIOKafkaConsumer, handle: Callable[[list[Any]], Awaitable[None]], commit: bool
) -> None:
    while True:
        batch = await c.getmany(timeout_ms=500, max_records=2000)
        records = [r for part in batch.values() for r in part]
        if records:
            await handle(records)
            if commit:
                await c.commit()


async def _either(a: asyncio.Event, b: asyncio.Event) -> None:
    ta, tb = asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())
    try:
        await asyncio.wait((ta, tb), return_when=asyncio.FIRST_COMPLETED)
    finally:
        ta.cancel()
        tb.cancel()


async def _start(c: AIOKafkaConsumer, stop: asyncio.Event) -> None:
    """Start a consumer, waiting for Kafka (with backoff) rather than exiting."""
    await retry(
        c.start, KafkaConnectionError, what="Kafka connect", log=log, stop=stop, first_s=0.5
    )


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> DownlinkStats:
    """Run until ``stop`` is set (or SIGTERM/SIGINT)."""
    cfg = settings.commands
    store = await asyncio.to_thread(Store, db_url(settings))
    targets = await asyncio.to_thread(Targets.load, settings)
    dl = Downlink(settings, store, targets)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    for cmd, d in await asyncio.to_thread(store.open_deliveries):
        dl._track(_Open(cmd, d))
    if dl.open:
        log.info("resuming %d open deliveries", len(dl.open))

    mq = AsyncMqtt(
        **mqtt_kwargs(settings, cfg.mqtt_user),
        client_id=f"citywatch-downlink-{cfg.instance}",
        keepalive_s=settings.mqtt.keepalive_s,
        on_message=dl.on_ack,
    )
    dl.mqtt = mq
    # MqttRefused is a ConnectionError too: a broker restarting refuses for a moment.
    await retry(
        mq.connect, (ConnectionError, TimeoutError), what="MQTT connect", log=log, first_s=0.5
    )
    await mq.subscribe([("city/+/+/+/ack", 1)])

    k = settings.kafka
    commands = AIOKafkaConsumer(
        k.commands_topic,
        **client_kwargs(settings),
        group_id=cfg.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    readings = AIOKafkaConsumer(
        k.readings_topic,
        **client_kwargs(settings),
        group_id=f"{cfg.group_id}-verify",
        auto_offset_reset="latest",
    )
    alerts = AIOKafkaConsumer(
        k.alerts_topic,
        **client_kwargs(settings),
        group_id=f"{cfg.group_id}-suggest",
        auto_offset_reset="latest",
    )
    presence = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    consumers = (commands, readings, alerts, presence)
    for c in consumers:
        await _start(c, stop)
    tasks: list[asyncio.Task[None]] = []
    try:
        parts = presence.partitions_for_topic(k.presence_topic)
        if not parts:
            await presence._client.force_metadata_update()
            parts = presence.partitions_for_topic(k.presence_topic) or set()
        tps = [TopicPartition(k.presence_topic, p) for p in parts]
        presence.assign(tps)
        await presence.seek_to_beginning(*tps)
        # Read the whole presence log before sending anything: an offline device must be
        # known as offline before its first command goes out.
        ends = await presence.end_offsets(tps)
        while [tp for tp, end in ends.items() if await presence.position(tp) < end]:
            batch = await presence.getmany(timeout_ms=500, max_records=10000)
            for part in batch.values():
                for r in part:
                    dl.on_presence(r.value)
        await asyncio.gather(*(_wait_assigned(c) for c in (commands, readings, alerts)))

        async def on_commands(records: list[Any]) -> None:
            for r in records:
                loaded = await asyncio.to_thread(dl.load, r.value)
                if loaded is not None:
                    dl.register(*loaded)

        async def on_readings(records: list[Any]) -> None:
            for r in records:
                dl.on_reading(r.key, r.value)

        async def on_presence(records: list[Any]) -> None:
            for r in records:
                dl.on_presence(r.value)

        async def on_alerts(records: list[Any]) -> None:
            for r in records:
                await asyncio.to_thread(dl.on_alert, r.value)

        tasks = [
            asyncio.create_task(_consume(commands, on_commands, True)),
            asyncio.create_task(_consume(readings, on_readings, False)),
            asyncio.create_task(_consume(presence, on_presence, False)),
            asyncio.create_task(_consume(alerts, on_alerts, False)),
        ]
        dl.ready.set()
        log.info("downlink ready (%d presence records, %d open)", len(dl.presence), len(dl.open))
        while not stop.is_set():
            dl.tick()
            await dl.flush()
            for t in tasks:
                if t.done() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_either(stop, dl.wake), cfg.tick_s)
            dl.wake.clear()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await dl.flush()
        for c in consumers:
            with contextlib.suppress(Exception):
                await c.stop()
        await mq.close()
        store.close()
    return dl.stats
