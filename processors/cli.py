"""``citywatch process``: run one processor of the consumer group.

Example:
    $ citywatch process --instance p2 --metrics-port 0
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console

from citywatch.logs import setup as setup_logging
from citywatch.settings import get_settings, override

console = Console()


def process(
    instance: str = typer.Option(None, help="instance name (Kafka client id)"),
    metrics_port: int = typer.Option(None, help="Prometheus port (0 disables)"),
    city_model: Path = typer.Option(None, help="city model JSON written by `citywatch simulate`"),
    log_level: str = typer.Option("INFO", help="logging level"),
) -> None:
    """Consume readings, run rules and detectors, write InfluxDB, publish alerts."""
    from processors.app import serve

    setup_logging(log_level)
    s = override(get_settings(), "processor", metrics_port=metrics_port, city_model=city_model)
    stats = asyncio.run(serve(s, instance))
    console.print(f"processor stopped: {stats}")


def native(
    action: str = typer.Argument("status", help="build: compile now if needed; status: report"),
) -> None:
    """Compiled copies of the processor's hot modules (mypyc): build them, or say if in use."""
    import time

    from processors import _native

    if action == "build":
        t0 = time.monotonic()
        where = _native.build()
        console.print(f"native modules: {where} ({time.monotonic() - t0:.0f} s)")
    elif action == "status":
        where = _native.build_dir()
        built = _native.is_built(where)
        console.print(
            f"native modules for these sources: {where} ({'built' if built else 'not built'}); "
            f"in use: {_native.active()}"
        )
    else:
        raise typer.BadParameter("build or status")
