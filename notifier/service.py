"""``citywatch notify``: consume alerts -> persist work orders -> send notifications.

The delivery guarantee, step by step:

1. A batch of alert events is read from ``citywatch.alerts`` (manual offsets).
2. Each event is applied in one DB transaction: the work order change, the event's key
   (alert id|state|ts, so a replay is a no-op) and one *pending* delivery row per channel
   and recipient, each with a deterministic idempotency key.
3. Only then are the batch's offsets committed. A crash before this replays the batch,
   which step 2 recognises; nothing is lost.
4. The delivery loop sends pending rows and marks them sent. A crash between persisting
   and sending leaves them pending: the next start sends them, once. A crash between a send
   and its "sent" mark resends the same idempotency key, which receivers dedupe on.

A second loop escalates orders past their severity's SLA to the supervisor, a third writes
work-order KPIs to InfluxDB.

Example:
    >>> import asyncio
    >>> from citywatch.settings import get_settings
    >>> asyncio.run(serve(get_settings()))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter, defaultdict
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from citywatch.backoff import retry
from citywatch.kafkautil import client_kwargs
from citywatch.settings import Settings
from notifier.channels import REGISTRY, Channel, DeliveryError
from notifier.channels.mqtt import MqttChannel
from notifier.events import BadEvent, parse
from notifier.routing import Router
from notifier.store import Store, open_store

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.s = settings
        self.ns = settings.notifier
        self.store = store
        self.router = Router(self.ns)
        self.channels: dict[str, Channel] = {}
        self.wake = asyncio.Event()
        self.stats: dict[str, int] = defaultdict(int)

    def _needed_channels(self) -> set[str]:
        out: set[str] = set()
        for c in [*self.ns.crews, self.ns.supervisor]:
            if c.webhook_url:
                out.add("webhook")
            if c.mqtt:
                out.add("mqtt")
            if c.email:
                out.add("email")
        return out

    async def start_channels(self) -> None:
        for name in sorted(self._needed_channels()):
            ch = REGISTRY[name](self.s)
            await ch.start()
            self.channels[name] = ch

    async def close_channels(self) -> None:
        for ch in self.channels.values():
            with contextlib.suppress(Exception):
                await ch.close()

    # -- consume -> persist -> commit ------------------------------------------------
    def _apply_batch(self, events: list[dict[str, Any]]) -> list[str]:
        routed = [(ev, self.router.crew_for(ev)) for ev in events]
        results = self.store.apply_events(routed, self.router.plan)
        for ev, (outcome, oid) in zip(events, results, strict=True):
            log.debug(
                "alert %s %s on %s/%s -> %s (work order %s)",
                ev["alert_id"],
                ev["state"],
                ev["target"],
                ev["kind"],
                outcome,
                oid,
            )
        return [outcome for outcome, _ in results]

    async def _apply_until_stored(
        self, events: list[dict[str, Any]], stop: asyncio.Event
    ) -> list[str]:
        # The database may be briefly away (PostgreSQL restart, SQLite lock): retry rather
        # than exit; re-applying a half-stored batch is harmless (events are deduplicated).
        return await retry(
            lambda: asyncio.to_thread(self._apply_batch, events),
            Exception,
            what=f"storing {len(events)} alert events",
            log=log,
            stop=stop,
            first_s=0.5,
            max_s=30.0,
            level=logging.ERROR,
        )

    async def consume(self, stop: asyncio.Event) -> None:
        c = AIOKafkaConsumer(
            self.s.kafka.alerts_topic,
            **client_kwargs(self.s),
            group_id=self.ns.group_id,
            client_id=f"citywatch-notifier-{self.ns.instance}",
            enable_auto_commit=False,
            # A new group starts from the oldest retained alert: better a burst of orders
            # (cleared ones resolve themselves) than a missed fault.
            auto_offset_reset="earliest",
        )
        await c.start()
        log.info("notifier consuming %s as group %s", self.s.kafka.alerts_topic, self.ns.group_id)
        try:
            while not stop.is_set():
                batch = await c.getmany(timeout_ms=500, max_records=self.ns.max_batch)
                if not batch:
                    continue
                events = []
                for tp, records in batch.items():
                    for r in records:
                        try:
                            events.append(parse(r.value))
                        except BadEvent as exc:
                            self.stats["bad"] += 1
                            log.error(
                                "skipping bad alert record %s[%d]@%d: %s",
                                tp.topic,
                                tp.partition,
                                r.offset,
                                exc,
                            )
                outcomes = await self._apply_until_stored(events, stop)
                for o in outcomes:
                    self.stats[o] += 1
                # Offsets only after the work orders (and their pending deliveries) are stored.
                offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
                try:
                    await c.commit(offsets)
                except (CommitFailedError, IllegalStateError) as exc:
                    # The group rebalanced meanwhile (this process stalled past the session
                    # timeout, or Kafka did). The events are stored already; whoever owns the
                    # partitions now replays from the last commit, which the store recognises
                    # event by event. Exiting would leave every later alert unread.
                    self.stats["commit_failed"] += 1
                    log.warning(
                        "commit refused after a rebalance (%s); %d alert events will replay",
                        exc,
                        len(events),
                    )
                    self.wake.set()
                    continue
                log.info(
                    "stored %d alert events (%s), committed offsets",
                    len(events),
                    dict(Counter(outcomes)),
                )
                self.wake.set()
        finally:
            with contextlib.suppress(KafkaError):
                await c.stop()

    # -- deliveries ------------------------------------------------------------------
    def _retry_at(self, attempts: int, now: float) -> float | None:
        if attempts + 1 >= self.ns.max_attempts:
            return None
        return now + min(self.ns.retry_base_s * 2.0**attempts, self.ns.retry_cap_s)

    async def _send_one(self, d: dict[str, Any]) -> bool:
        ch = self.channels.get(d["channel"])
        try:
            if ch is None:
                raise DeliveryError(f"channel {d['channel']} is not configured", permanent=True)
            await ch.send(d)
        except DeliveryError as exc:
            retry = None if exc.permanent else self._retry_at(d["attempts"], time.time())
            await asyncio.to_thread(self.store.mark_failed, d["id"], str(exc), retry)
            self.stats["send_failed"] += 1
            if retry is None:
                log.error(
                    "giving up on delivery %s (%s): %s", d["idempotency_key"], d["channel"], exc
                )
            else:
                log.warning(
                    "delivery %s (%s) failed, retry in %.1fs: %s",
                    d["idempotency_key"],
                    d["channel"],
                    retry - time.time(),
                    exc,
                )
            return False
        await asyncio.to_thread(self.store.mark_sent, d["id"])
        self.stats["sent"] += 1
        log.info(
            "sent %s %s via %s to %s (work order %s)",
            d["event"],
            d["idempotency_key"],
            d["channel"],
            d["recipient"],
            d["work_order_id"],
        )
        return True

    async def _send_order(self, rows: list[dict[str, Any]], sem: asyncio.Semaphore) -> None:
        # One order's notifications go out in the order they were planned.
        async with sem:
            for d in rows:
                await self._send_one(d)

    async def deliver_due(self) -> int:
        now = time.time()
        due = await asyncio.to_thread(
            self.store.due_deliveries, now, now - self.ns.delivery_delay_s, 1000
        )
        if not due:
            return 0
        by_order: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for d in due:
            by_order[d["work_order_id"]].append(d)
        sem = asyncio.Semaphore(self.ns.delivery_concurrency)
        await asyncio.gather(*(self._send_order(rows, sem) for rows in by_order.values()))
        await self._publish_status({d["crew_id"] for d in due if d["channel"] == "mqtt"})
        return len(due)

    async def _publish_status(self, crews: set[str]) -> None:
        ch = self.channels.get("mqtt")
        if not isinstance(ch, MqttChannel) or not self.ns.mqtt_status_retained:
            return
        for crew in sorted(crews):
            counts = await asyncio.to_thread(self.store.crew_status, crew)
            try:
                await ch.publish_status(crew, counts)
            except DeliveryError as exc:
                log.warning("crew status for %s not published: %s", crew, exc)

    async def deliver(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.deliver_due()
            except Exception:  # a DB hiccup must not end the loop; rows stay pending
                log.exception("delivery pass failed")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=1.0)

    # -- escalation ------------------------------------------------------------------
    async def escalate_due(self) -> int:
        sla = self.ns.sla
        ack = {k: v.ack_s for k, v in sla.items()}
        res = {k: v.resolve_s for k, v in sla.items()}
        now = time.time()
        n = 0
        for oid, level in await asyncio.to_thread(self.store.overdue, ack, res, now):
            if await asyncio.to_thread(self.store.escalate, oid, level, self.router.plan):
                n += 1
                log.warning("work order %d escalated to the supervisor (level %d)", oid, level)
        if n:
            self.stats["escalated"] += n
            self.wake.set()
        return n

    async def escalations(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.escalate_due()
            except Exception:
                log.exception("escalation pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.ns.escalation_check_s)

    async def kpis(self, stop: asyncio.Event) -> None:
        from notifier.kpis import write_kpis

        while not stop.is_set():
            try:
                await write_kpis(self.s, self.store)
            except Exception as exc:  # InfluxDB down: try again next interval
                log.warning("work-order KPIs not written: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.ns.kpi_interval_s)

    async def run(self, stop: asyncio.Event) -> dict[str, int]:
        await self.start_channels()
        tasks = [
            asyncio.create_task(self.consume(stop), name="consume"),
            asyncio.create_task(self.deliver(stop), name="deliver"),
            asyncio.create_task(self.escalations(stop), name="escalate"),
        ]
        if self.ns.kpi_interval_s > 0:
            tasks.append(asyncio.create_task(self.kpis(stop), name="kpis"))
        log.info("notifier running")
        try:
            done, _ = await asyncio.wait(
                [*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
            )
            for t in done:
                if t.get_name() != "kpis" and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.close_channels()
        return dict(self.stats)


async def serve(settings: Settings) -> dict[str, int]:
    """Run the notifier until SIGINT/SIGTERM."""
    store = await asyncio.to_thread(open_store, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await Notifier(settings, store).run(stop)
    finally:
        store.close()
