"""Work-order KPIs -> InfluxDB measurement ``workorders`` (retention policy ``kpi``).

Over a window (``NotifierSettings.kpi_window_s``, default 30 days) of orders created, per
(district, family) and for the whole city (tags ``district=all,family=all``):
``created``, ``active``, ``resolved`` (resolved or closed), ``closed``, ``closure_rate``
(resolved / created; the bureaus report 0.96-0.97), ``ack_s_mean``/``ack_s_median`` and
``resolve_s_mean``/``resolve_s_median`` (seconds from creation).

Example:
    >>> rows = [{"district": "n", "family": "bin", "status": "resolved", "created_at": 0.0,
    ...          "acked_at": 60.0, "resolved_at": 600.0}]
    >>> compute(rows)[("n", "bin")]["closure_rate"]
    1.0
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict
from typing import Any

from citywatch.settings import Settings
from notifier.store import Store
from processors.sinks.influx import InfluxSink
from processors.sinks.lines import encode_fields, series_prefix

MEASUREMENT = "workorders"


def _stats(rows: list[dict[str, Any]]) -> dict[str, float]:
    created = len(rows)
    done = [r for r in rows if r["status"] in ("resolved", "closed")]
    acks = [r["acked_at"] - r["created_at"] for r in rows if r.get("acked_at") is not None]
    fixes = [r["resolved_at"] - r["created_at"] for r in done if r.get("resolved_at") is not None]
    out: dict[str, float] = {
        "created": float(created),
        "active": float(sum(r["status"] in ("open", "acknowledged") for r in rows)),
        "resolved": float(len(done)),
        "closed": float(sum(r["status"] == "closed" for r in rows)),
        "closure_rate": len(done) / created if created else 0.0,
    }
    if acks:
        out["ack_s_mean"] = statistics.fmean(acks)
        out["ack_s_median"] = statistics.median(acks)
    if fixes:
        out["resolve_s_mean"] = statistics.fmean(fixes)
        out["resolve_s_median"] = statistics.median(fixes)
    return out


def compute(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """KPIs per (district, family) plus ("all", "all")."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["district"], r["family"])].append(r)
    out = {k: _stats(v) for k, v in groups.items()}
    if rows:
        out[("all", "all")] = _stats(rows)
    return out


def lines(kpis: dict[tuple[str, str], dict[str, float]], ts_ns: int) -> list[str]:
    out = []
    for (district, family), fields in sorted(kpis.items()):
        prefix = series_prefix(MEASUREMENT, {"district": district, "family": family})
        body = encode_fields({k: float(v) for k, v in fields.items()})
        out.append(f"{prefix}{body} {ts_ns}")
    return out


async def write_kpis(settings: Settings, store: Store, now: float | None = None) -> int:
    """Compute and write one set of KPI points; returns how many lines were written."""
    now = time.time() if now is None else now
    since = now - settings.notifier.kpi_window_s
    rows = [
        r for r in await asyncio.to_thread(store.orders_between, since) if r["created_at"] >= since
    ]
    out = lines(compute(rows), int(now * 1e9))
    if not out:
        return 0
    sink = InfluxSink(settings)
    try:
        i = settings.influx
        await sink.write(out, bucket=f"{i.database}/{i.kpi_retention_policy}")
    finally:
        await sink.close()
    return len(out)
