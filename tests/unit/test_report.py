"""The daily report's work-order section, from the notifier's KPI series."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from dashboards.report import Report, _work_orders

T = "2026-12-06T15:59:00Z"


def test_work_orders_show_the_city_figures_at_the_end_of_the_day(tmp_path: Path) -> None:
    rep = Report(date(2026, 12, 6))
    series = {
        # time, created, active, closure_rate, ack_s_median, resolve_s_median
        "all / all": [["2026-12-06T01:00:00Z", 9, 9, 0.0, None, None], [T, 40, 2, 0.95, 300, 5400]],
        "north / bin": [[T, 30, 1, 0.9666, 240, 3600]],
        "south / streetlight": [[T, 10, 1, 0.9, 600, 7200]],
        "east / dust": [[T, 0, 0, 0.0, None, None]],  # nothing created: no bar
    }
    _work_orders(rep, series, tmp_path, "r")
    got = {name: value for _, name, value in rep.figures}
    assert got == {
        "Created": "40",
        "Active (open or acknowledged) at end of day": "2",
        "Closure rate (resolved or closed / created)": "95.00 %",
        "Time to acknowledge, median": "5 min",
        "Time to resolve, median": "90 min",
    }
    assert rep.charts == [("Work-order closure rate", "r-workorders.png")]
    assert (tmp_path / "r-workorders.png").read_bytes()[:4] == b"\x89PNG"
    assert not rep.notes


def test_no_work_order_figures_is_said_not_shown_as_zero(tmp_path: Path) -> None:
    rep = Report(date(2026, 12, 6))
    _work_orders(rep, {}, tmp_path, "r")
    assert rep.figures == [] and rep.charts == []
    assert rep.notes and "citywatch notify" in rep.notes[0]
    assert not list(tmp_path.iterdir())
