"""``citywatch dashboards build|push|assets|monitor|rollup`` and ``citywatch report``.

Example:
    $ citywatch dashboards build && citywatch report --date 2026-11-22
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import typer

from citywatch.settings import Settings, get_settings

app = typer.Typer(help="Grafana dashboards as code, the asset register, pipeline health.")


@app.command()
def build(
    check: bool = typer.Option(False, help="only report dashboards whose JSON is stale"),
) -> None:
    """Write the dashboards' JSON under dashboards/json/ (commit it)."""
    from dashboards.build import JSON_DIR, stale, write

    s = get_settings()
    if check:
        bad = stale(s)
        for name in bad:
            typer.echo(f"stale: {name}")
        raise typer.Exit(1 if bad else 0)
    for p in write(s):
        typer.echo(str(p))
    typer.echo(f"{JSON_DIR}: up to date")


@app.command()
def push(
    url: str = typer.Option(None, help="Grafana URL [default: settings.grafana.url]"),
    token: str = typer.Option(..., envvar="GRAFANA_TOKEN", help="service-account token"),
    influx_url: str = typer.Option(
        None, help="InfluxDB URL as Grafana reaches it [default: settings.influx.url]"
    ),
) -> None:
    """Upload the datasource, the folder and every dashboard (overwrite; idempotent)."""
    from grafana_client.client import GrafanaException

    from dashboards.push import push as do_push

    s = get_settings()
    try:
        do_push(s, url or s.grafana.url, token, influx_url=influx_url, log=typer.echo)
    except (GrafanaException, OSError) as exc:
        typer.echo(f"push failed: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def assets(
    city_model: Path = typer.Option(..., exists=True, help="city model JSON (citywatch simulate)"),
) -> None:
    """Write each device's position (from the city model) for the dashboards' maps."""
    from citywatch.citymodel import CityModel
    from dashboards.assets import write_assets

    n = write_assets(get_settings(), CityModel.load(city_model))
    typer.echo(f"{n} device positions written")


@app.command()
def monitor(log_level: str = typer.Option("INFO", help="logging level")) -> None:
    """Scrape gateway/processor metrics and Kafka lag into InfluxDB until stopped."""
    from citywatch.logs import setup as setup_logging
    from citywatch.monitor import Monitor

    # Like the gateway and the processor: its warnings (InfluxDB or Kafka down) and each
    # roll-up round need a handler, or they reach nobody.
    setup_logging(log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await Monitor(get_settings()).run(stop)

    asyncio.run(main())


@app.command()
def rollup(
    since: str = typer.Option(
        ..., help="start: a local day (YYYY-MM-DD) or an ISO 8601 time with its offset"
    ),
    until: str = typer.Option(None, help="end, as --since [default: now]"),
) -> None:
    """Roll the lighting rate up per hour and district over a range (month-long views)."""
    from citywatch.logs import setup as setup_logging
    from dashboards.rollup import roll_up

    setup_logging("INFO")  # a line per day rolled up
    s = get_settings()
    lo = _when(s, since, "--since")
    hi = _when(s, until, "--until") if until else datetime.now(UTC)
    if hi <= lo:
        raise typer.BadParameter("must be after --since", param_hint="--until")
    n = asyncio.run(roll_up(s, lo, hi))
    typer.echo(f"lighting roll-up {lo.isoformat()} .. {hi.isoformat()}: {n} hourly points")


def _when(s: Settings, text: str, hint: str) -> datetime:
    """A local day's midnight in the city's time zone, or an ISO 8601 time with an offset."""
    try:
        return datetime.combine(date.fromisoformat(text), time(0), ZoneInfo(s.grafana.timezone))
    except ValueError:
        pass  # not a day: a time, then
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"not a day or a time: {text!r}", param_hint=hint) from exc
    if t.tzinfo is None:
        raise typer.BadParameter(f"give the offset (Z or +08:00): {text!r}", param_hint=hint)
    return t


def report(
    day: str = typer.Option(..., "--date", help="local day, YYYY-MM-DD"),
    out: Path = typer.Option(None, help="directory [default: settings.grafana.report_dir]"),
) -> None:
    """Write the one-page daily operations report (HTML with PNG charts)."""
    from dashboards.report import build_report

    try:
        d = date.fromisoformat(day)
    except ValueError as exc:
        raise typer.BadParameter(f"not a date: {day!r} (YYYY-MM-DD)", param_hint="--date") from exc
    s = get_settings()
    path = build_report(s, d, out or s.grafana.report_dir)
    typer.echo(str(path))
