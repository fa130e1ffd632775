"""Smoke test of the benchmark harness on the real stack: tiny sizes, same code paths.

The end-to-end phase (simulator -> gateway -> processor -> InfluxDB, benchmark topics) must
account for every acked reading, and the latency phase must see its probes in InfluxDB and
as alerts. No figure is asserted (timed assertions are not allowed here); bench/run is for
figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import harness
from citywatch.settings import Settings

pytestmark = pytest.mark.integration


def test_harness_quick_e2e_and_latency(stack_settings: Settings, tmp_path: Path) -> None:
    sizes = {**harness.SIZES["quick"], "devices": 300, "e2e_s": 5, "latency_s": 3}
    r = harness.run_all(stack_settings, ["e2e", "latency"], "quick", tmp_path, sizes=sizes)
    assert r["errors"] == {}, r["errors"]
    e2e = r["e2e"]
    assert e2e["loss"]["acked"] > 500
    assert e2e["loss"]["missing"] == 0, e2e["loss"]["first_missing"]
    assert e2e["e2e_per_s"] > 0 and e2e["memory"]["processor"]["peak_rss_mib"] > 20
    lat = r["latency"]
    assert lat["probes_missing_influx"] == 0 and lat["probes_missing_alert"] == 0
    assert lat["alert"]["n"] == lat["published"]["probes"] > 0
    assert lat["influx"]["p50_ms"] > 0
    rows = harness.table_rows(r)
    assert any("0 missing" in row[2] for row in rows)
    harness.plot(r, tmp_path / "plot.png")
    assert json.loads(json.dumps(r, default=str))["e2e"]["loss"]["missing"] == 0


def test_harness_pipeline_phase_measures_gateway_processor_and_floor(
    stack_settings: Settings, tmp_path: Path
) -> None:
    # 200,000 readings: enough batches (20,000 each) that the 0.5 s commit polling sees the
    # processor's progress twice, so each of its two runs yields a rate.
    sizes = {**harness.SIZES["quick"], "processor_n": 200_000}
    r = harness.run_all(stack_settings, ["pipeline"], "quick", tmp_path, sizes=sizes)
    assert r["errors"] == {}, r["errors"]
    p = r["pipeline"]
    assert p["gateway_readings"] == sizes["gateway_n"]  # every published reading forwarded
    assert p["raw_consume_per_s"] > 0
    assert p["processor_per_s"] > 0 and p["processor_floor_per_s"] > 0
    floor = next(row for row in harness.table_rows(r) if "every rule off" in row[0])
    assert "× raw consume" in floor[2]
    # The bare consumer wrote every reading's line and committed it.
    assert p["bare_pipeline_per_s"] > 0
    bare = next(row for row in harness.table_rows(r) if "bare consumer" in row[0])
    assert "× raw consume" in bare[2] and "× this" in bare[2]


def test_the_bare_pipeline_stops_with_influxdbs_refusal_instead_of_hanging(
    stack_settings: Settings,
) -> None:
    import asyncio
    import uuid

    import httpx

    from bench.processor import _delete, bare_pipeline, fill_lines

    s = stack_settings
    topic = f"citywatch.bench.lines.{uuid.uuid4().hex[:6]}"
    asyncio.run(fill_lines(s, topic, 3000))
    try:
        # Batches of 500, so the writers fail while the consumer still has batches to queue.
        with pytest.raises(httpx.HTTPStatusError, match="404"):
            asyncio.run(
                asyncio.wait_for(
                    bare_pipeline(s, topic, 3000, "citywatch_no_such_db", batch=500), 60
                )
            )
    finally:
        asyncio.run(_delete(s, topic))
