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
