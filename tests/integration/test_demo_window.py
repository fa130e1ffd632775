"""``citywatch.demo.clear_window``: a demo run deletes what earlier runs left in its window,
and nothing else (other devices, other times)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import httpx
import pytest

from citywatch import credentials
from citywatch.demo import NS, clear_window
from citywatch.settings import Settings

from .helpers import influx_query

pytestmark = pytest.mark.integration


def _write(s: Settings, lines: list[str]) -> None:
    r = httpx.post(
        f"{s.influx.url}/write",
        params={
            "db": s.influx.database,
            "rp": s.influx.retention_policy,
            "u": s.influx.admin_user,
            "p": credentials.password(s, "influx"),
        },
        content="\n".join(lines),
        timeout=30,
    )
    r.raise_for_status()


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
