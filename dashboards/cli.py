"""``citywatch dashboards build|push|assets|monitor`` and ``citywatch report``.

Example:
    $ citywatch dashboards build && citywatch report --date 2026-11-22
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import date
from pathlib import Path

import typer

from citywatch.settings import get_settings

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
def monitor() -> None:
    """Scrape gateway/processor metrics and Kafka lag into InfluxDB until stopped."""
    from citywatch.monitor import Monitor

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await Monitor(get_settings()).run(stop)

    asyncio.run(main())


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
