"""``citywatch process``: the consumer loop around the engine, at-least-once into InfluxDB.

Loop: poll up to ``max_batch`` records from ``citywatch.readings`` in the consumer group
(waiting up to ``batch_ms`` for the first, then ``linger_ms`` for more) -> engine (rules,
detectors, alerts) -> write the batch's lines to InfluxDB, retrying with backoff until confirmed
-> publish alert events to ``citywatch.alerts`` (acks=all) -> commit offsets. The write, publish
and commit of one batch run while the engine works on the next (InfluxDB works on the other core
meanwhile); at most one batch is in flight, so memory stays bounded and batches finish in order.
A crash anywhere before the commit replays the batch: readings overwrite themselves in InfluxDB
and alert ids are deterministic, so the replay adds nothing.

After a partition is assigned (start, restart, rebalance) the processor first replays up to
``warmup_s`` of that partition's recent past before the committed offset with all output
suppressed: the rules get their state back, and no alert is raised twice or missed. The
statistical detectors, which learn from days rather than minutes, also take back their last
checkpoint (processors.checkpoints, written every ``checkpoint_s``).

Example:
    $ citywatch process --instance p1
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from citywatch import native as _native
from citywatch.gctune import tune_gc
from citywatch.kafkautil import client_kwargs
from citywatch.settings import Settings
from processors import open_alerts
from processors.checkpoints import Checkpoints
from processors.clock import progress
from processors.commands_feed import CommandsFeed
from processors.config import RulesConfig
from processors.engine import Engine, Output
from processors.sinks.influx import InfluxSink
from processors.sinks.kafka import KafkaSink

log = logging.getLogger("citywatch.processor")


class _Warmup(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, seek back to rebuild state; records before ``until`` are warm-up only."""

    def __init__(self, proc: Processor) -> None:
        self.proc = proc

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.proc.rebalances += 1
        # Finish (write + commit) the batch in flight while the partitions are still ours.
        with contextlib.suppress(Exception):
            await self.proc.settle()
        for tp in revoked:
            self.proc.warm_until.pop(tp, None)
        # Their next owner starts from what the detectors know now.
        await self.proc.checkpoints.save({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.proc.rebalances += 1
        self._forget_lost({tp.partition for tp in assigned})
        if not assigned:
            return
        c = self.proc.consumer
        # The main loop's poll goes on while this runs: without the pause it took readings
        # from the committed offsets into fresh detectors before the checkpoints were loaded
        # and the warm-up seek was made (and checkpointed them over the good ones).
        c.pause(*assigned)
        try:
            await self._rebuild(assigned)
        finally:
            c.resume(*assigned)

    def _forget_lost(self, now: set[int]) -> None:
        """Let go of the devices of partitions held before this rebalance and not now: the
        silence rule would otherwise raise them all once their readings stopped coming here,
        and a stale open episode would go on beside the one their new owner continues."""
        proc = self.proc
        lost, proc.owned = proc.owned - now, now
        if not lost:
            return
        devices = proc.checkpoints.devices_of(lost)
        proc.engine.forget(devices)
        proc.checkpoints.drop(lost)
        log.info(
            "forgot %d devices of partitions %s, now another processor's",
            len(devices),
            sorted(lost),
        )

    async def _rebuild(self, assigned: list[TopicPartition]) -> None:
        c = self.proc.consumer
        ps = self.proc.s.processor
        # What we, or these partitions' previous owner, published after the last commit is
        # about to be raised again by the replay: learn it first, so it is not re-sent. A new
        # group replays nothing. Bounded: this runs inside the group's rebalance.
        committed = {tp: await c.committed(tp) for tp in assigned}
        if any(committed.values()):
            n = await self.proc.kafka_sink.published.load(
                self.proc.s, ps.group_id, since_s=max(ps.warmup_s, 300.0), timeout_s=10.0
            )
            log.info("%d recent alert events on the alerts topic", n)
            if self.proc.kafka_sink.open_alerts:
                episodes = await open_alerts.load(self.proc.s, ps.group_id, timeout_s=10.0)
                self.proc.engine.alerts.adopt(episodes)
                log.info("%d open alert episodes to continue", len(episodes))
            try:
                n = await self.proc.checkpoints.load(
                    [tp.partition for tp in assigned if committed[tp]],
                    ps.checkpoint_timeout_s,
                )
                log.info("detector checkpoints of %d devices", n)
            except Exception as exc:  # the replay alone still rebuilds what it can
                log.warning("detector checkpoints unavailable: %r", exc)
        since_ms = int((time.time() - ps.warmup_s) * 1000)
        try:
            times = await c.offsets_for_times({tp: since_ms for tp in assigned})
            begins = await c.beginning_offsets(list(assigned))
        except Exception as exc:
            log.warning("warm-up offsets unavailable: %r", exc)
            return
        for tp in assigned:
            upto = committed[tp]
            if not upto:
                continue
            found = times.get(tp)
            start = found.offset if found is not None else upto
            start = max(start, upto - ps.warmup_max_records, begins.get(tp, 0))
            if start < upto:
                self.proc.warm_until[tp] = upto
                c.seek(tp, start)
                log.info("%s: warming up from offset %d to %d", tp, start, upto)


class Processor:
    def __init__(self, settings: Settings, instance: str | None = None) -> None:
        self.s = settings
        ps = settings.processor
        self.instance = instance or ps.instance
        self.cfg = RulesConfig.load(ps.rules_file)
        self.engine = Engine(self.cfg, _load_city(settings))
        self.sink = InfluxSink(settings)
        self.warm_until: dict[TopicPartition, int] = {}
        # Rebalance callbacks so far: a poll that spans one keeps only what came after it.
        self.rebalances = 0
        # Readings partitions assigned at the last rebalance (see _Warmup._forget_lost).
        self.owned: set[int] = set()
        # Event-time watermark per partition, and how far each partition lags its log end:
        # time-based rules (silence) may only see the clock of the slowest lagging partition,
        # or a device on a partition not yet read would look silent.
        self.part_wm: dict[TopicPartition, int] = {}
        # ...and how far it got once it has gone quiet (see watermark).
        self.part_front: dict[TopicPartition, int] = {}
        self.part_lag: dict[TopicPartition, int] = {}
        self.part_seen: dict[TopicPartition, float] = {}
        self.consumer = AIOKafkaConsumer(
            **client_kwargs(settings),
            group_id=ps.group_id,
            client_id=f"citywatch-{self.instance}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=ps.max_poll_interval_ms,
            fetch_max_bytes=16 * 1024 * 1024,
            fetch_min_bytes=ps.fetch_min_bytes,
            fetch_max_wait_ms=ps.fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self.kafka_sink = KafkaSink(settings, self.instance)
        self.checkpoints = Checkpoints(settings, self.engine, self.instance)
        reg = self.registry = CollectorRegistry()
        self.m_records = Counter("citywatch_processor_records", "Readings processed", registry=reg)
        self.m_written = Counter(
            "citywatch_processor_points", "Points confirmed by InfluxDB", registry=reg
        )
        self.m_alerts = Counter(
            "citywatch_processor_alert_events", "Alert events", ["state"], registry=reg
        )
        self.m_lag = Gauge("citywatch_processor_lag", "Records behind the log end", registry=reg)
        self.m_write = Histogram(
            "citywatch_processor_write_seconds", "InfluxDB batch write", registry=reg
        )
        self._inflight: asyncio.Task[None] | None = None
        self.stats = {
            "records": 0,
            "warmup": 0,
            "points": 0,
            "alert_events": 0,
            "bad": 0,
            "batches": 0,
            "commit_failed": 0,
            "rejected_lines": 0,
            "alert_events_skipped": 0,
        }

    async def poll(self) -> dict[TopicPartition, list[Any]]:
        """The next batch: up to ``batch_ms`` for a first record, then ``linger_ms`` more
        (or until ``max_batch`` records) so that batches are not a trickle under light load."""
        ps = self.s.processor
        batch: dict[TopicPartition, list[Any]] = await self.consumer.getmany(
            timeout_ms=ps.batch_ms, max_records=ps.max_batch
        )
        n = sum(map(len, batch.values()))
        if not n or ps.linger_ms <= 0:
            return batch
        loop = asyncio.get_running_loop()
        until = loop.time() + ps.linger_ms / 1000
        seen = self.rebalances
        while n < ps.max_batch:
            left_ms = int((until - loop.time()) * 1000)
            if left_ms <= 0:
                break
            more = await self.consumer.getmany(timeout_ms=left_ms, max_records=ps.max_batch - n)
            if self.rebalances != seen:
                # After a rebalance every partition restarts from its committed offset (or
                # its warm-up start): what was polled before comes again; keep only the new.
                batch, n, seen = more, sum(map(len, more.values())), self.rebalances
                continue
            for tp, msgs in more.items():
                # Later polls continue each partition where the earlier ones stopped.
                batch.setdefault(tp, []).extend(msgs)
                n += len(msgs)
        return batch

    async def _handle(self, batch: dict[TopicPartition, list[Any]], stop: asyncio.Event) -> None:
        out, offsets = await self._process(batch)
        await self.settle()
        self._inflight = asyncio.create_task(self._finish(out, offsets, stop))

    async def settle(self) -> None:
        """Wait until the batch in flight is written and committed (its error is raised).

        Cleared only once done: the revocation callback must wait for a commit that the main
        loop is already waiting for (it used to find nothing in flight and let the
        revocation go ahead, and the commit then failed on a partition no longer assigned).
        """
        task = self._inflight
        if task is None:
            return
        try:
            await task
        finally:
            if self._inflight is task:
                self._inflight = None

    async def _finish(
        self, out: Output, offsets: dict[TopicPartition, int], stop: asyncio.Event
    ) -> None:
        await self._emit(out, stop)
        # Partitions revoked since this batch was polled are someone else's now: they replay
        # it from the last commit (committing them raises IllegalStateError).
        owned = self.consumer.assignment()
        mine = {tp: off for tp, off in offsets.items() if tp in owned}
        if len(mine) < len(offsets):
            self.stats["commit_failed"] += 1
        if mine:
            try:
                await self.consumer.commit(mine)
            except (CommitFailedError, IllegalStateError) as exc:
                # The group rebalanced meanwhile (e.g. Kafka stalled past the session
                # timeout): whoever owns these partitions now replays from the last commit,
                # and the replay only rewrites the same points and alert ids.
                log.warning("commit refused after a rebalance (%s); the batch will replay", exc)
                self.stats["commit_failed"] += 1
        self.stats["batches"] += 1

    async def _process(
        self, batch: dict[TopicPartition, list[Any]]
    ) -> tuple[Output, dict[TopicPartition, int]]:
        """Run the engine over a polled batch: its output and the offsets to commit after.

        Yields to the event loop every ``yield_every`` readings: the previous batch's InfluxDB
        write, the alert producer and the next fetch only make progress while the loop runs.
        Without the yields a 20,000-reading batch held the loop for 0.4 s and the write began
        only when the next batch was done, so InfluxDB and the engine took turns instead of
        working on their two cores at once (bench.processor: 34,185 -> 42,842 readings/s).
        """
        out = Output()
        warm = Output()  # discarded: warm-up only rebuilds state
        offsets: dict[TopicPartition, int] = {}
        checkpoints = self.checkpoints
        for tp, msgs in batch.items():
            until = self.warm_until.get(tp)
            live: list[dict[str, Any]] = []
            replay: list[dict[str, Any]] = []
            # Devices to checkpoint next time, with the time their detectors have learnt up to;
            # also which partition each device's readings come from.
            seen = checkpoints.touched.setdefault(tp.partition, {})
            for msg in msgs:
                try:
                    rec = orjson.loads(msg.value)
                except orjson.JSONDecodeError:
                    # Only the gateway writes here; a bad record means a bug, not bad input.
                    log.error("unparseable record at %s@%d", tp, msg.offset)
                    self.stats["bad"] += 1
                    continue
                (replay if until is not None and msg.offset < until else live).append(rec)
                # Here, while the record is in the cache: a loop after this one cost
                # ~250 ns a record instead of ~85 (20,000 records outgrow the cache).
                seen[rec["device_id"]] = rec["ts"]
            if replay:
                await self._feed(replay, warm, replay=True)
                self.stats["warmup"] += len(replay)
            if until is not None and msgs[-1].offset + 1 >= until:
                del self.warm_until[tp]
            if live:
                await self._feed(live, out)
                self.stats["records"] += len(live)
                self.m_records.inc(len(live))
            offsets[tp] = msgs[-1].offset + 1
            low, front = progress(live or replay)
            self.part_wm[tp] = max(self.part_wm.get(tp, 0), low)
            self.part_front[tp] = max(self.part_front.get(tp, 0), front)
            self.part_seen[tp] = time.monotonic()
            hw = self.consumer.highwater(tp)
            self.part_lag[tp] = max(0, (hw or 0) - offsets[tp])
        # No clock while any partition still replays its past: its state is not complete, and
        # what a tick raises then would be lost with the suppressed output. Time-based rules
        # stamp their conditions with event time (a silence starts at last reading + limit),
        # so a later tick raises the same alert with the same id.
        if not self.warm_until:
            self.engine.tick(self.watermark(), out)
        return out, offsets

    async def _feed(
        self, records: list[dict[str, Any]], out: Output, *, replay: bool = False
    ) -> None:
        """The engine over ``records``, in slices of ``yield_every`` with the loop run between."""
        step = self.s.processor.yield_every
        for i in range(0, len(records), step):
            self.engine.process(records[i : i + step], out, tick=False, replay=replay)
            await asyncio.sleep(0)

    async def _emit(self, out: Output, stop: asyncio.Event) -> None:
        """Lines to InfluxDB (until confirmed) and, meanwhile, alert events to Kafka (acks=all).

        Both finish before the batch's offsets are committed; neither waits for the other, so
        a crew's alert does not queue behind a 20,000-point write.
        """
        t0 = time.monotonic()
        events = (
            asyncio.create_task(self.kafka_sink.publish(out.events, stop)) if out.events else None
        )
        try:
            await self._write_lines(out, stop)
        except BaseException:
            if events is not None:
                events.cancel()  # the batch will replay: its events are re-sent then
            raise
        if events is not None:
            self.stats["alert_events_skipped"] += await events
            for ev in out.events:
                self.m_alerts.labels(ev.state).inc()
            self.stats["alert_events"] += len(out.events)
        self.m_write.observe(time.monotonic() - t0)

    async def _write_lines(self, out: Output, stop: asyncio.Event) -> None:
        rejected = await self.sink.write_until_done(out.lines, stop)
        if out.kpi_lines:
            i = self.s.influx
            rejected += await self.sink.write_until_done(
                out.kpi_lines, stop, bucket=f"{i.database}/{i.kpi_retention_policy}"
            )
        if rejected:
            await self.kafka_sink.dead_letter(rejected, stop)
            self.stats["rejected_lines"] += len(rejected)
        self.m_written.inc(len(out.lines) + len(out.kpi_lines))
        self.stats["points"] += len(out.lines) + len(out.kpi_lines)

    def watermark(self) -> int:
        """Event time every active partition has reached.

        A partition holds the clock back while it lags its log end or has had records within
        ``idle_partition_s``: its devices may still have readings on the way. A partition idle
        for longer has nothing in flight and does not hold the clock (as in Flink's idleness).
        When all are idle, the clock is the furthest front any partition reached: a lower
        quartile of its last batch would stop it short of the end of a large final batch,
        and the devices that fell silent there would never be reported.
        """
        assigned = self.consumer.assignment()
        now = time.monotonic()
        idle = self.s.processor.idle_partition_s
        lagging = [
            self.part_wm.get(tp, 0)
            for tp in assigned
            if self._lag(tp) > 0 or now - self.part_seen.get(tp, -idle) < idle
        ]
        if lagging:
            return min(lagging)
        return max((self.part_front.get(tp, 0) for tp in assigned), default=0)

    def _lag(self, tp: TopicPartition) -> int:
        if tp in self.part_lag:
            return self.part_lag[tp]
        # Not read from yet: lagging if its log end is known and non-empty.
        hw = self.consumer.highwater(tp)
        return 1 if hw else 0

    async def run(self, stop: asyncio.Event) -> dict[str, int]:
        await self.kafka_sink.start()
        await self.checkpoints.start()
        self.kafka_sink.open_alerts = await open_alerts.exists(self.s)
        # Operators' commands first, so no lamp they switched off is judged "out" meanwhile.
        feed = CommandsFeed(self.s, self.engine.command)
        await feed.start()
        await feed.catch_up(timeout_s=15.0)
        follow = asyncio.create_task(feed.follow(stop))
        self.consumer.subscribe([self.s.kafka.readings_topic], listener=_Warmup(self))
        await self.consumer.start()
        log.info(
            "processor %s up (engine: %s)",
            self.instance,
            "compiled modules" if _native.active() else "pure Python",
        )
        try:
            while not stop.is_set():
                batch = await self.poll()
                if batch:
                    await self._handle(batch, stop)
                else:
                    # Idle: still let time-based rules (silence) see event time move.
                    out = Output()
                    if not self.warm_until:
                        self.engine.tick(self.watermark(), out)
                    if out.lines or out.events or out.kpi_lines:
                        await self.settle()
                        await self._emit(out, stop)
                if self.checkpoints.due() and not self.warm_until:
                    await self.checkpoints.save()
            await self.settle()
            await self.checkpoints.save()
        finally:
            follow.cancel()
            with contextlib.suppress(BaseException):
                await follow
            await feed.stop()
            with contextlib.suppress(Exception):
                await self.consumer.stop()
            with contextlib.suppress(Exception):
                await self.kafka_sink.stop()
            await self.checkpoints.stop()
            await self.sink.close()
        return dict(self.stats)


def _load_city(settings: Settings) -> Any:
    path = settings.processor.city_model
    if path is None or not path.exists():
        return None
    from citywatch.citymodel import CityModel  # type: ignore[import-not-found,unused-ignore]

    return CityModel.load(path)


async def serve(settings: Settings, instance: str | None = None) -> dict[str, int]:
    """Run one processor until SIGTERM/SIGINT; returns its counters."""
    proc = Processor(settings, instance)
    if settings.processor.metrics_port:
        start_http_server(settings.processor.metrics_port, addr="127.0.0.1", registry=proc.registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    frozen = tune_gc(settings.processor.gc_threshold)
    log.debug("gc: %d startup objects frozen, thresholds %s", frozen, gc.get_threshold())
    return await proc.run(stop)
