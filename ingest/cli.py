"""``citywatch gateway``: run one MQTT -> Kafka gateway process.

Example:
    $ citywatch gateway --instance gw2 --metrics-port 9311
"""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from citywatch.logs import setup as setup_logging
from citywatch.settings import get_settings, override

console = Console()


def gateway(
    instance: str = typer.Option(None, help="stable instance name (MQTT client id, spool dir)"),
    metrics_port: int = typer.Option(None, help="Prometheus port (0 disables)"),
    log_level: str = typer.Option("INFO", help="logging level"),
) -> None:
    """Forward device readings from Mosquitto to Kafka, acking MQTT only once stored."""
    from ingest.gateway import serve

    setup_logging(log_level)
    s = override(get_settings(), "gateway", metrics_port=metrics_port)
    stats = asyncio.run(serve(s, instance))
    console.print(f"gateway stopped: {stats}")
