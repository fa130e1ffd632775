"""Pipeline health into InfluxDB: readings/s in and written, dead letters by reason, Kafka
consumer lag and InfluxDB write latency, for the Pipeline health dashboard.

Every ``grafana.monitor_interval_s`` it scrapes the gateway's and the processor's Prometheus
endpoints (127.0.0.1, ``gateway.metrics_port`` / ``processor.metrics_port``) and the
processors' consumer-group offsets against the log end of ``citywatch.readings``, and writes
``pipeline`` (fields in_total, written_total, in_per_s, written_per_s, lag, write_ms,
broker_dropped, broker_stored) and
``pipeline_deadletter`` (tag reason; fields total, per_s) at wall-clock time. Rates are
deltas between scrapes; a counter that went down (a restarted process) restarts its rate.
Every ``grafana.rollup_interval_s`` it also redoes the hourly lighting-rate roll-up of the
hours in the last ``grafana.rollup_lookback_h`` whose lamp readings changed since they were
last rolled up (``dashboards.rollup.fill_hours``).

Why scrape rather than have each process write its own health: the counters already exist
for Prometheus users, and one small job keeps InfluxDB writes out of the hot paths.

Example:
    $ citywatch dashboards monitor          # runs until Ctrl-C
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from citywatch.kafkautil import client_kwargs, end_offsets
from citywatch.settings import Settings
from processors.sinks.influx import InfluxSink
from processors.sinks.lines import point_line

log = logging.getLogger("citywatch.monitor")


def scrape_text(text: str) -> dict[tuple[str, str], float]:
    """(sample name, label 'reason' or '') -> value summed over other labels.

    Example:
        >>> scrape_text('citywatch_gateway_deadlettered_total{reason="bad_json"} 3.0\\n')
        {('citywatch_gateway_deadlettered_total', 'bad_json'): 3.0}
    """
    out: dict[tuple[str, str], float] = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            key = (smp.name, smp.labels.get("reason", ""))
            out[key] = out.get(key, 0.0) + smp.value
    return out


def _total(m: dict[tuple[str, str], float], name: str) -> float | None:
    vals = [v for (n, _), v in m.items() if n == name]
    return sum(vals) if vals else None


@dataclass
class Monitor:
    s: Settings
    prev: dict[str, tuple[float, float]] = field(default_factory=dict)

    def rate(self, key: str, value: float, now: float) -> float | None:
        last = self.prev.get(key)
        self.prev[key] = (now, value)
        if last is None or value < last[1] or now <= last[0]:
            return None
        return (value - last[1]) / (now - last[0])

    async def scrape(self, client: httpx.AsyncClient, port: int) -> dict[tuple[str, str], float]:
        if not port:
            return {}
        try:
            r = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=2.0)
            return scrape_text(r.text)
        except httpx.HTTPError:
            return {}

    async def lag(self) -> int | None:
        k = self.s.kafka
        admin = AIOKafkaAdminClient(**client_kwargs(self.s))
        try:
            await admin.start()
            offs = await admin.list_consumer_group_offsets(self.s.processor.group_id)
            ends = await end_offsets(self.s, k.readings_topic)
        except Exception as exc:  # Kafka down or restarting: report no lag point
            log.warning("consumer lag unavailable: %r", exc)
            return None
        finally:
            await admin.close()
        if not offs:
            return None
        return int(sum(max(0, end - offs[tp].offset) for tp, end in ends.items() if tp in offs))

    async def sample(self, client: httpx.AsyncClient) -> list[str]:
        """One scrape -> the lines to write (may be empty)."""
        now = time.time()
        ts = time.time_ns()
        gw = await self.scrape(client, self.s.gateway.metrics_port)
        pr = await self.scrape(client, self.s.processor.metrics_port)
        fields: dict[str, float | int] = {}
        for name, src, metric in (
            ("in", gw, "citywatch_gateway_readings_forwarded_total"),
            ("written", pr, "citywatch_processor_records_total"),
        ):
            total = _total(src, metric)
            if total is None:
                continue
            fields[f"{name}_total"] = total
            r = self.rate(name, total, now)
            if r is not None:
                fields[f"{name}_per_s"] = r
        wsum = _total(pr, "citywatch_processor_write_seconds_sum")
        wcnt = _total(pr, "citywatch_processor_write_seconds_count")
        if wsum is not None and wcnt is not None:
            dsum, dcnt = self.rate("wsum", wsum, now), self.rate("wcnt", wcnt, now)
            if dsum is not None and dcnt:
                fields["write_ms"] = 1000.0 * dsum / dcnt
        lag = await self.lag()
        if lag is not None:
            fields["lag"] = lag
        # Mosquitto's own counters, as the gateway last saw them (ingest.broker_health):
        # messages it acked to devices and then dropped, and messages it holds.
        for field_name, metric in (
            ("broker_dropped", "citywatch_mqtt_broker_dropped"),
            ("broker_stored", "citywatch_mqtt_broker_stored"),
        ):
            value = _total(gw, metric)
            if value is not None:
                fields[field_name] = int(value)
        m = self.s.grafana.monitor_measurement
        lines = [point_line(m, {}, fields, ts)] if fields else []
        for (name, reason), v in gw.items():
            if name != "citywatch_gateway_deadlettered_total" or not reason:
                continue
            dl: dict[str, float] = {"total": v}
            r = self.rate(f"dl:{reason}", v, now)
            if r is not None:
                dl["per_s"] = r
            lines.append(point_line(f"{m}_deadletter", {"reason": reason}, dl, ts))
        return lines

    async def roll_up(self, stop: asyncio.Event) -> None:
        """Now and then, redo the lighting roll-up of the recent hours whose readings changed."""
        from dashboards.rollup import fill_hours

        g = self.s.grafana
        while g.rollup_interval_s > 0 and not stop.is_set():
            now = datetime.now(UTC)
            try:
                spans = await fill_hours(self.s, now - timedelta(hours=g.rollup_lookback_h), now)
                log.info("lighting roll-up: %d hour spans redone", len(spans))
            except Exception as exc:  # InfluxDB down or slow: the next round redoes the hours
                log.warning("lighting roll-up not written: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), g.rollup_interval_s)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        sink = InfluxSink(self.s)
        try:
            async with httpx.AsyncClient() as client:
                rollups = asyncio.create_task(self.roll_up(stop))
                while not stop.is_set():
                    lines = await self.sample(client)
                    try:
                        await sink.write(lines)
                    except Exception as exc:  # InfluxDB down: skip this sample, keep going
                        log.warning("pipeline sample not written: %s", exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.s.grafana.monitor_interval_s)
                rollups.cancel()  # a roll-up in progress is redone by the next monitor
                with contextlib.suppress(asyncio.CancelledError):
                    await rollups
        finally:
            await sink.close()
