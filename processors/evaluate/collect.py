"""What the pipeline holds for a run: alerts, readings and dead letters from Kafka (each topic
from its beginning to its end offsets), readings from InfluxDB (InfluxQL over HTTP, chunked).

Example:
    >>> got = asyncio.run(collect(settings, since_ns=0, t0=t0, t1=t1, alerts_from_kafka=True,
    ...                           use_kafka=True, use_influx=True, limit_s=60))  # doctest: +SKIP
    >>> sorted(got.dead.items())  # doctest: +SKIP
    [('crc', 35), ('truncated', 32)]
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from citywatch.citymodel import DEFAULT_INTERVALS_S
from citywatch.kafkautil import client_kwargs, read_to_end, topic_partitions
from ingest.simulator.ledger import RangeSet
from processors.evaluate.scorecard import NS


@dataclass
class Collected:
    """What the pipeline holds for this run (filled by ``collect``)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    kafka: dict[str, RangeSet] = field(default_factory=dict)
    influx: dict[str, RangeSet] | None = None
    dead: Counter[str] = field(default_factory=Counter)
    complete: bool = True
    notes: list[str] = field(default_factory=list)


async def _read_topic(
    settings: Any, topic: str, handle: Any, limit_s: float, since_ns: int
) -> bool:
    """Feed ``handle`` every record of ``topic`` appended since ``since_ns`` (to the current
    end); False if ``limit_s`` ran out first.

    Records carry the producer's wall-clock time, which for everything of this run is at or
    after ``since_ns`` (a reading is received, then sent). Reading from there rather than from
    the beginning keeps the time independent of the topic's size: with a week's retention on a
    busy machine, ``citywatch.readings`` held 10 million records, more than ``limit_s`` could
    read, and this run's readings were then reported missing from Kafka.
    """
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        **client_kwargs(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topic)
        if not tps:
            return True
        consumer.assign(tps)
        # A second early: the filters in ``collect`` still decide what is this run's.
        since_ms = max(0, since_ns // 1_000_000 - 1000)
        found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            at = found.get(tp)
            consumer.seek(tp, at.offset if at is not None else ends[tp])
        return await read_to_end(consumer, handle, limit_s, max_records=20_000)
    finally:
        await consumer.stop()


async def _influx_readings(
    settings: Any, t0: float, t1: float, since_ns: int
) -> dict[str, RangeSet]:
    import httpx

    from citywatch import influxql

    s = settings.influx
    found: dict[str, RangeSet] = {}
    async with httpx.AsyncClient(timeout=120.0, auth=influxql.auth(settings)) as client:
        for family in DEFAULT_INTERVALS_S:
            query = (
                f'SELECT "seq", "device_id", "received_at" FROM "{s.database}".'
                f'"{s.retention_policy}"."{family}" '
                f"WHERE time >= {int(t0 * NS)} AND time <= {int(t1 * NS)}"
            )
            params = {"q": query, "db": s.database, "epoch": "ns", "chunked": "true"}
            params["chunk_size"] = "20000"
            async with client.stream("GET", f"{s.url}/query", params=params) as resp:
                resp.raise_for_status()
                async for line in resp.aiter_lines():
                    if line.strip():
                        _influx_chunk(orjson.loads(line), since_ns, found)
    return found


def _influx_chunk(chunk: dict[str, Any], since_ns: int, found: dict[str, RangeSet]) -> None:
    for result in chunk.get("results", []):
        if "error" in result:
            raise RuntimeError(f"InfluxDB: {result['error']}")
        for series in result.get("series", []):
            cols = series["columns"]
            i_seq, i_dev, i_rat = (cols.index(c) for c in ("seq", "device_id", "received_at"))
            for row in series["values"]:
                seq, dev, rat = row[i_seq], row[i_dev], row[i_rat]
                if seq is None or dev is None or (rat is not None and rat < since_ns):
                    continue
                found.setdefault(dev, RangeSet()).add(int(seq))


async def collect(
    settings: Any,
    *,
    since_ns: int,
    t0: float,
    t1: float,
    alerts_from_kafka: bool,
    use_kafka: bool,
    use_influx: bool,
    limit_s: float,
) -> Collected:
    """Read alerts, readings and dead letters from Kafka and readings from InfluxDB."""
    out = Collected()
    if use_kafka:
        k = settings.kafka

        def on_alert(rec: Any) -> None:
            # Only this run's alerts: an earlier run with the same seed covers the same
            # simulated window with the same alert ids and would be counted twice.
            if rec.timestamp * 1_000_000 >= since_ns:
                out.events.append(orjson.loads(rec.value))

        def on_reading(rec: Any) -> None:
            obj = orjson.loads(rec.value)
            if obj.get("received_at", 0) >= since_ns and obj.get("seq") is not None:
                out.kafka.setdefault(obj["device_id"], RangeSet()).add(int(obj["seq"]))

        def on_dead(rec: Any) -> None:
            headers = dict(rec.headers or ())
            if int(headers.get("received_at", b"0") or 0) >= since_ns:
                out.dead[headers.get("reason", b"?").decode(errors="replace")] += 1

        if alerts_from_kafka:
            out.complete &= await _read_topic(settings, k.alerts_topic, on_alert, limit_s, since_ns)
        out.complete &= await _read_topic(settings, k.readings_topic, on_reading, limit_s, since_ns)
        out.complete &= await _read_topic(settings, k.deadletter_topic, on_dead, limit_s, since_ns)
    if use_influx:
        try:
            out.influx = await _influx_readings(settings, t0, t1, since_ns)
        except Exception as exc:  # report and go on: the scorecard is still useful
            out.notes.append(f"InfluxDB not counted: {exc}")
    return out
