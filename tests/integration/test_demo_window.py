"""``citywatch.demo``: a demo run deletes what earlier runs left in its window, and nothing else
(other devices, other times); its KPIs count only its own devices and window."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from citywatch import influxql
from citywatch.demo import NS, Demo, clear_window
from citywatch.settings import Settings
from processors.sinks.lines import reading_line

from .helpers import influx_query

pytestmark = pytest.mark.integration


def _write(s: Settings, lines: list[str]) -> None:
    influxql.write(s, "\n".join(lines), rp=s.influx.retention_policy)


def _count(s: Settings, measurement: str, field: str, tag: str, value: str) -> int:
    q = f'SELECT count("{field}") FROM "{measurement}" WHERE "{tag}" = \'{value}\''
    got = influx_query(s, q)
    return int(got[0][1]) if got else 0


def test_clear_window_deletes_the_demo_targets_points_in_the_window_only(
    stack_settings: Settings, rid: str
) -> None:
    s = stack_settings
    mine, other, circuit = f"bin-{rid}-demo", f"bin-{rid}-other", f"circuit-{rid}"
    t0 = int(time.time()) - 2 * 86_400  # inside the raw retention, in a past shard
    inside, outside = t0 + 600, t0 + 7200
    _write(
        s,
        [
            f"bin,device_id={dev},district=d fill_ratio=0.5 {t * NS}"
            for dev, t in [(mine, inside), (mine, outside), (other, inside)]
        ]
        + [
            f"anomalies,device_id={mine},metric=fill_ratio score=0.9 {inside * NS}",
            f'alerts,target={circuit},kind=circuit_outage alert_id="a" {inside * NS}',
        ],
    )
    assert _count(s, "bin", "fill_ratio", "device_id", mine) == 2
    city = SimpleNamespace(devices={mine: None}, circuits={circuit: None}, sites={})

    assert clear_window(s, city, t0, t0 + 3600) == 2

    assert (
        _count(s, "bin", "fill_ratio", "device_id", mine) == 1
    )  # the point after the window stays
    assert _count(s, "bin", "fill_ratio", "device_id", other) == 1  # not a demo device: untouched
    assert _count(s, "anomalies", "score", "device_id", mine) == 0
    assert _count(s, "alerts", "alert_id", "target", circuit) == 0


def test_demo_kpis_count_only_the_runs_devices_and_window(
    stack_settings: Settings, rid: str
) -> None:
    s = stack_settings
    lit, out, full, other = (f"{k}-{rid}" for k in ("lamp-a", "lamp-b", "bin-a", "bin-b"))
    t0 = int(time.time()) - 2 * 86_400
    at, later = t0 + 600, t0 + 7200

    def lamp(device: str, power_w: float) -> str:  # as the processor writes it
        return reading_line(
            {"family": "streetlight", "device_id": device, "district": "d",
             "circuit_id": f"c-{rid}", "power_w": power_w, "dimming_pct": 80.0, "ts": at * NS}
        )  # fmt: skip

    _write(
        s,
        [
            lamp(lit, 60.0),
            lamp(out, 0.0),  # switched on, dark: a lamp out
            f"bin,device_id={full},district=d fill_ratio=0.95 {at * NS}",
            f"bin,device_id={full},district=d fill_ratio=0.1 {later * NS}",  # after the run
            f"bin,device_id={other},district=d fill_ratio=0.99 {at * NS}",  # not the run's
        ],
    )
    d = Demo(s, rid, Path("/nonexistent"))
    d.scope([lit, out, full], t0, t0 + 3600)
    d.open_alerts["x"] = ("lamp_out", "device", out)

    kpis = d.compute_kpis()

    assert kpis["lighting rate (run so far)"] == "50.00%"
    assert kpis["lamps lit / reporting"] == "1 / 2"
    assert kpis["bins ≥ 90% full"] == "1 / 1"
    assert kpis["facility integrity"] == "66.67%"  # 3 devices, one with an open device alert
    assert "vehicles moving" not in kpis
