"""The demo's live view and the scorecard stay whole in an 80-column terminal or a log."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from citywatch import demo
from citywatch.settings import Settings
from ingest.simulator.ledger import Ledger
from ingest.simulator.truth import iso
from processors.evaluate import KIND_FAMILY, AlertRec, TruthFault, compare, render, score


def _lines(console: Console) -> list[str]:
    return console.export_text().splitlines()


def _demo_view(width: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    console = Console(width=width, record=True)
    monkeypatch.setattr(demo, "console", console)
    d = demo.Demo(Settings(), "20261206-150318", Path("/var/state/citywatch/demo/20261206-150318"))
    d.rates = {"in": 512.0, "in_total": 95_091, "out": 498.0, "out_total": 95_091}
    d.kpis = {"lamps lit / reporting": "9792 / 12566", "facility integrity": "99.9%"}
    d.alerts.update({("voltage_out_of_band", "warning"): 6, ("bin_fire", "critical"): 2})
    console.print(d.view("done", time.monotonic() - 191))
    return _lines(console)


def test_demo_view_stacks_its_tables_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _demo_view(80, monkeypatch)
    text = "\n".join(lines)
    assert max(map(len, lines)) <= 80
    assert "…" not in text
    for whole in ("out: processor → InfluxDB", "95,091", "facility integrity",
                  "voltage_out_of_band", "/var/state/citywatch/demo/20261206-150318"):  # fmt: skip
        assert whole in text
    flow = next(i for i, ln in enumerate(lines) if "pipeline" in ln)
    assert "KPIs" not in lines[flow]


def test_demo_view_puts_flow_beside_kpis_when_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _demo_view(140, monkeypatch)
    assert any("pipeline" in ln and "KPIs" in ln for ln in lines)
    assert max(map(len, lines)) <= 140


def test_scorecard_shows_every_kind_whole_at_80_columns() -> None:
    faults = [
        TruthFault(f"f{i}", kind, f"dev-{i}", family, 1000.0, 2000.0)
        for i, (kind, family) in enumerate(KIND_FAMILY.items())
    ]
    # Every fault found 12,345 s late except the last kind's, which is missed.
    alerts = [
        AlertRec(f"a{i}", f.kind, f.target, episode_start=1000.0, raised_at=13_345.0)
        for i, f in enumerate(faults[:-1])
    ]
    card = score(faults, alerts, sim_start=0.0, sim_end=50_000.0)
    led = Ledger({"sim_start": iso(0), "sim_end": iso(50_000)})
    console = Console(width=80, record=True)
    render(console, card, led, [compare("kafka", led.acked, {})], Counter(), True)
    lines = _lines(console)
    text = "\n".join(lines)
    assert max(map(len, lines)) <= 80
    assert "…" not in text
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines if ln and ln.split()[0] in KIND_FAMILY}
    assert set(rows) == set(KIND_FAMILY)
    *_, last = KIND_FAMILY
    first = next(iter(KIND_FAMILY))
    assert rows[first] == ["1", "1", "0", "100.0%", "100.0%", "12345", "/", "12345", "s"]
    assert rows[last][:4] == ["1", "0", "0", "0.0%"]
    assert f"below target: {last}" in text


def test_demo_view_shows_the_runs_mean_rate_once_done(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(width=120, record=True)
    monkeypatch.setattr(demo, "console", console)
    d = demo.Demo(Settings(), "r", Path("/tmp/r"))
    d.rates = {"in": 0.0, "in_total": 96_000.0, "out": 0.0, "out_total": 90_000.0}
    # in: 1,000 already counted at the poll before it grew, then 95,000 more in 190 s
    d.busy = {"in": (10.0, 1_000.0, 200.0), "out": (12.0, 0.0, 162.0)}
    console.print(d.view("done", time.monotonic()))
    text = console.export_text()
    assert "mean /s" in text and "per second" not in text
    rows = {ln.split("│")[1].strip(): ln.split("│")[2].strip() for ln in text.splitlines()
            if ln.count("│") >= 3}  # fmt: skip
    assert rows["in: gateway → Kafka"] == "500"  # (96,000 - 1,000) / 190 s
    assert rows["out: processor → InfluxDB"] == "600"  # 90,000 / 150 s
    assert rows["dead-lettered"] == "0.0"  # never grew
    console.print(d.view("simulating", time.monotonic()))
    assert "per second" in console.export_text()
