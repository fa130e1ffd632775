"""``citywatch report --date YYYY-MM-DD``: a one-page daily operations report (HTML + PNG charts).

The figures are the KPIs of dashboards/kpis.py (the same InfluxQL as the dashboards) for one
local day in ``grafana.timezone``; the lighting rate is for the night that starts that
evening (12:00 that day to 12:00 the next), as bureaus report it. Charts are matplotlib PNGs
next to the HTML; the template is dashboards/templates/report.html.j2.

Example:
    $ citywatch report --date 2026-11-22 --out out/reports
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from jinja2 import Environment, FileSystemLoader, select_autoescape

from citywatch import influxql
from citywatch.settings import Settings
from dashboards import rollup
from dashboards.kpis import Kpi, expand, kpis

FAMILIES = ("streetlight", "bin", "vehicle", "dust")
TEMPLATES = Path(__file__).resolve().parent / "templates"
# A batch job over a whole day of a whole city: slow queries on a busy server are fine.
QUERY_TIMEOUT_S = 300.0


def _utc(dt: datetime) -> str:
    return dt.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Report:
    day: date
    figures: list[tuple[str, str, str]] = field(default_factory=list)  # section, name, value
    charts: list[tuple[str, str]] = field(default_factory=list)  # title, file name
    notes: list[str] = field(default_factory=list)

    def add(self, section: str, name: str, value: str) -> None:
        self.figures.append((section, name, value))


class Runner:
    """Runs KPI queries for a window, all districts, one family at a time where needed."""

    def __init__(self, s: Settings, start: datetime, end: datetime) -> None:
        self.s, self.start, self.end = s, _utc(start), _utc(end)

    def rows(self, k: Kpi, family: str = ".*", interval: str = "1h") -> list[list[Any]]:
        q = expand(k.query, start=self.start, end=self.end, interval=interval)
        q = q.replace("$district", ".*").replace("$family", family)
        return influxql.rows(self.s, q, timeout_s=QUERY_TIMEOUT_S)

    def series(
        self, k: Kpi, tag: str | tuple[str, ...], interval: str = "1h", tail: str = ""
    ) -> dict[str, list[list[Any]]]:
        """Rows per value of a GROUP BY tag (several: values joined by " / "), times as
        RFC 3339 strings; ``tail`` is appended to the query (a GROUP BY the KPI lacks)."""
        tags = (tag,) if isinstance(tag, str) else tag
        q = expand(k.query, start=self.start, end=self.end, interval=interval) + tail
        q = q.replace("$district", ".*").replace("$family", ".*")
        out: dict[str, list[list[Any]]] = {}
        for ser in influxql.series(self.s, q, QUERY_TIMEOUT_S, epoch=None):
            key = " / ".join((ser.get("tags") or {}).get(t, "") for t in tags)
            out.setdefault(key, []).extend(ser.get("values", []))
        return out


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f} %"


def _num(x: float | None, fmt: str = "{:,.0f}") -> str:
    return "—" if x is None else fmt.format(x)


def _dust_now(pm10: float | None, pm25: float | None, noise: float | None) -> str:
    """A site's last 15 min; a sensor without a noise (or PM2.5) channel shows a dash.

    >>> _dust_now(152.4, 61.0, None)
    'PM10 152 µg/m³, PM2.5 61, noise — dBA'
    """
    return f"PM10 {_num(pm10)} µg/m³, PM2.5 {_num(pm25)}, noise {_num(noise)} dBA"


def _first(rows: Sequence[Sequence[Any]], col: int = 1) -> float | None:
    for r in rows:
        if len(r) > col and r[col] is not None:
            return float(r[col])
    return None


def _bar(path: Path, title: str, labels: list[str], values: list[float], unit: str) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 2.8), dpi=100)
    ax.barh(labels, values, color="#3b7dd8")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(unit)
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _lines(path: Path, title: str, data: dict[str, list[list[Any]]], unit: str) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 2.8), dpi=100)
    for name, rows in sorted(data.items()):
        pts = [(datetime.fromisoformat(r[0]), r[1]) for r in rows if r[1] is not None]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, label=name or "all", linewidth=1.2)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(unit)
    ax.tick_params(labelsize=8)
    if data:
        ax.legend(fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _lighting(
    s: Settings, rep: Report, k: dict[str, Kpi], day: date, out_dir: Path, stem: str
) -> None:
    """The Streetlights section: the lighting rate of the night that starts on ``day``
    (12:00 to 12:00 local) and of the month's nights up to it, all from the hourly roll-up.

    The report first rolls up every night of the month, its own included, whose lamp
    readings are not those the roll-up last counted (``rollup.fill_nights``): never rolled
    up, in part, or with readings come or gone since. The night's figures are then the
    roll-up's, which equal the ones over the readings (tests/integration/test_dashboards.py)
    without asking the readings a second time, and the month's would take minutes from the
    readings. The roll-up's hours are UTC hours: in a zone whose offset is not whole hours, a
    night is taken in whole UTC hours.
    """
    tz = ZoneInfo(s.grafana.timezone)
    first = datetime.combine(day.replace(day=1), time(12), tz)
    night_lo = datetime.combine(day, time(12), tz)
    night_hi = night_lo + timedelta(days=1)

    # Only the nights whose readings changed since their roll-up (its own night included)
    # are rolled up again: a past night already rolled up costs two count queries.
    nights, redone = asyncio.run(rollup.fill_nights(s, first, night_hi))
    filled = [n for n in redone if n != night_lo]
    rate = k["lighting_rate_rollup"]
    night = Runner(s, night_lo, night_hi)
    rep.add("Streetlights", "Lighting rate, city (night)", _pct(_first(night.rows(rate))))
    by_d = night.series(rate, "district", tail=" GROUP BY district")
    for d, rows in sorted(by_d.items()):
        rep.add("Streetlights", f"Lighting rate, {d}", _pct(_first(rows)))
    month = Runner(s, first, night_hi)
    label = f"Lighting rate, month to date ({nights} nights)"
    rep.add("Streetlights", f"{label}, city", _pct(_first(month.rows(rate))))
    by_d = month.series(rate, "district", tail=" GROUP BY district")
    for d, rows in sorted(by_d.items()):
        rep.add("Streetlights", f"{label}, {d}", _pct(_first(rows)))
    if filled:
        rep.notes.append(
            f"The hourly lighting roll-up was missing or out of date for {len(filled)} earlier "
            f"night(s) of the month (from {filled[0]:%Y-%m-%d}); the report rolled them up."
        )
    hourly = night.series(
        rate, "district", tail=f" GROUP BY time(1h), district fill(none) tz('{tz.key}')"
    )
    if hourly:
        name = f"{stem}-lighting.png"
        _lines(out_dir / name, "Lighting rate per hour (night)", hourly, "share lit")
        rep.charts.append(("Lighting rate per hour", name))


def _minutes(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:,.0f} min"


def _work_orders(rep: Report, series: dict[str, list[list[Any]]], out_dir: Path, stem: str) -> None:
    """The notifier's work-order KPIs (notifier/kpis.py) as they stood at the end of the day:
    each over the orders created in the notifier's window (30 days) before it."""
    last = {key: rows[-1] for key, rows in series.items() if rows}
    city = last.pop("all / all", None)
    if city is None:
        rep.notes.append("No work-order figures for this day (written by `citywatch notify`).")
        return
    _, created, active, closure, ack_s, resolve_s = city[:6]
    sec = "Work orders (30 days to the end of the day)"
    rep.add(sec, "Created", _num(created))
    rep.add(sec, "Active (open or acknowledged) at end of day", _num(active))
    rep.add(sec, "Closure rate (resolved or closed / created)", _pct(closure))
    rep.add(sec, "Time to acknowledge, median", _minutes(ack_s))
    rep.add(sec, "Time to resolve, median", _minutes(resolve_s))
    groups = sorted(g for g, row in last.items() if row[1] and row[3] is not None)
    if groups:
        name = f"{stem}-workorders.png"
        values = [100 * float(last[g][3]) for g in groups]
        _bar(out_dir / name, "Work-order closure rate by district / family", groups, values, "%")
        rep.charts.append(("Work-order closure rate", name))


def build_report(s: Settings, day: date, out_dir: Path) -> Path:
    """Query, draw and write ``report-<day>.html`` (+ PNGs) under out_dir; returns the HTML."""
    tz = ZoneInfo(s.grafana.timezone)
    lo = datetime.combine(day, time(0), tz)
    hi = lo + timedelta(days=1)
    k = kpis(s)
    dayq = Runner(s, lo, hi)
    out_dir.mkdir(parents=True, exist_ok=True)
    rep = Report(day)
    stem = f"report-{day.isoformat()}"

    _lighting(s, rep, k, day, out_dir, stem)

    # Facility integrity per family
    labels, values = [], []
    for fam in FAMILIES:
        seen = _first(dayq.rows(k["devices_reporting"], fam))
        bad = _first(dayq.rows(k["devices_faulty"], fam)) or 0.0
        if seen:
            rate = 1.0 - bad / seen
            rep.add(
                "Facility integrity",
                f"{fam}: healthy / reporting",
                f"{_pct(rate)} ({seen - bad:.0f} / {seen:.0f})",
            )
            labels.append(fam)
            values.append(100 * rate)
    if labels:
        name = f"{stem}-integrity.png"
        _bar(out_dir / name, "Facility integrity rate by family", labels, values, "%")
        rep.charts.append(("Facility integrity", name))

    # Sanitation
    rep.add(
        "Sanitation", "Bins over threshold at end of day", _num(_first(dayq.rows(k["bins_over"])))
    )
    served = [
        (datetime.fromisoformat(r[0].replace("Z", "+00:00")).timestamp() - r[1] / 1e9) / 60
        for r in dayq.rows(kpis_view(s, "overflow_cleared"))
        if r[1] is not None
    ]
    rep.add(
        "Sanitation",
        "Overflow response (overflow → emptied), median",
        f"{statistics.median(served):.0f} min over {len(served)} bins" if served else "—",
    )
    moving = [r[1] for r in dayq.rows(k["vehicles_moving"], interval="5m") if r[1] is not None]
    rep.add("Sanitation", "Vehicles on the move, peak", _num(max(moving) if moving else None))
    trips = dayq.series(k["trips"], "vehicle")
    # A day's trip summary is stamped at that day's local midnight.
    if trips:
        veh = sorted(trips)
        km = [float(trips[v][-1][1] or 0) for v in veh]
        hours = [float(trips[v][-1][2] or 0) for v in veh]
        cov = [float(trips[v][-1][3]) for v in veh if trips[v][-1][3] is not None]
        rep.add("Vehicles", "Vehicles with a trip summary", str(len(veh)))
        rep.add("Vehicles", "Mileage, all vehicles", f"{sum(km):,.1f} km")
        rep.add("Vehicles", "Operating hours, all vehicles", f"{sum(hours):,.1f} h")
        rep.add("Vehicles", "Route coverage, mean", _pct(statistics.mean(cov) if cov else None))
        name = f"{stem}-mileage.png"
        _bar(out_dir / name, "Mileage per vehicle", veh, km, "km")
        rep.charts.append(("Mileage per vehicle", name))
    else:
        rep.notes.append("No trip summaries for this day yet (written an hour after midnight).")

    # Dust
    over = dayq.series(k["dust_hours_over"], "site_id")
    hours_over = {site: sum(float(r[1] or 0) for r in rows) for site, rows in over.items()}
    rep.add("Dust and noise", "Site-hours over the PM10 limit", _num(sum(hours_over.values())))
    now = dayq.series(k["dust_now"], "site_id")
    # The sites nearest their limit (a city has hundreds of sites; one page shows 8).
    latest = sorted(((rows[0], site) for site, rows in now.items()), key=lambda x: -(x[0][1] or 0))
    for r, site in latest[:8]:
        rep.add("Dust and noise", f"{site} last 15 min", _dust_now(r[1], r[2], r[3]))
    if hours_over:
        name = f"{stem}-dust.png"
        sites = sorted(hours_over)
        _bar(
            out_dir / name,
            "Hours over the PM10 limit per site",
            sites,
            [hours_over[x] for x in sites],
            "h",
        )
        rep.charts.append(("Dust: hours over limit", name))

    # Alerts
    per_state = dayq.series(k["alerts_per_day"], "state")
    for st in ("raised", "escalated", "cleared"):
        rep.add(
            "Alerts",
            f"Alert events {st}",
            _num(sum(float(r[1] or 0) for r in per_state.get(st, []))),
        )
    sev = dayq.series(k["open_alerts_by_severity"], "severity")
    for sv, rows in sorted(sev.items()):
        rep.add("Alerts", f"Open at end of day: {sv}", _num(_first(rows)))
    ttc = [
        (datetime.fromisoformat(r[0].replace("Z", "+00:00")).timestamp() - r[1] / 1e9) / 60
        for r in dayq.rows(k["cleared_alerts"])
        if r[1] is not None
    ]
    rep.add("Alerts", "Time to clear, median", f"{statistics.median(ttc):.0f} min" if ttc else "—")
    if sev:
        name = f"{stem}-alerts.png"
        names = sorted(sev)
        _bar(
            out_dir / name,
            "Open alerts by severity",
            names,
            [_first(sev[n]) or 0 for n in names],
            "alerts",
        )
        rep.charts.append(("Open alerts", name))
    _work_orders(rep, dayq.series(k["workorders"], ("district", "family")), out_dir, stem)

    # Pipeline (wall-clock day)
    rates = dayq.rows(k["pipeline_rates"])
    if rates:
        ins = [r[1] for r in rates if r[1] is not None]
        rep.add("Pipeline", "Readings in per second, peak", _num(max(ins) if ins else None))
    lat = [r[1] for r in dayq.rows(k["pipeline_write_latency"]) if r[1] is not None]
    rep.add(
        "Pipeline",
        "InfluxDB write latency, mean",
        _num(statistics.mean(lat) if lat else None, "{:.1f} ms"),
    )
    # The broker's drop counter only grows while it runs: the day's rise is what it lost.
    dropped = [r[1] for r in dayq.rows(k["pipeline_broker"]) if r[1] is not None]
    rises = sum(max(0, b - a) for a, b in itertools.pairwise(dropped))
    rep.add(
        "Pipeline",
        "Messages the MQTT broker acked and then dropped",
        _num(rises if dropped else None, "{:,.0f}"),
    )

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape())
    html = env.get_template("report.html.j2").render(
        city=s.city.name,
        day=day.isoformat(),
        tz=s.grafana.timezone,
        rep=rep,
        sections=list(dict.fromkeys(sec for sec, _, _ in rep.figures)),
    )
    path = out_dir / f"{stem}.html"
    path.write_text(html)
    return path


def kpis_view(s: Settings, key: str) -> Kpi:
    from dashboards.boards import views

    return views(s)[key]
