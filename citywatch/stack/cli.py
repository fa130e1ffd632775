"""``citywatch stack up|down|status|logs``: the local Mosquitto, Kafka and InfluxDB.

Example:
    $ citywatch stack up
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import typer
from rich.console import Console
from rich.table import Table

from citywatch import stack
from citywatch.settings import get_settings
from citywatch.stack.topics import ensure_topics

app = typer.Typer(help="Install, start, stop and inspect the local stack.", no_args_is_help=True)
console = Console()


@app.command()
def up() -> None:
    """Install what is missing, start Mosquitto, Kafka and InfluxDB, create topics (idempotent)."""
    try:
        stack.up(get_settings(), log=console.print)
    except stack.StackError as exc:
        console.print(f"[red]stack up failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print("[green]stack is up[/green]")


@app.command()
def down() -> None:
    """Stop the servers this project started (by pid file); data stays in the state dir."""
    stack.down(get_settings(), log=console.print)


@app.command()
def status() -> None:
    """Show each server's process and health; exits 1 if any is unhealthy."""
    s = get_settings()
    table = Table("service", "process", "health")
    ok = True
    for name, (running, healthy) in stack.status(s).items():
        ok &= healthy
        table.add_row(
            name,
            "running" if running else "[yellow]not ours / stopped[/yellow]",
            "[green]healthy[/green]" if healthy else "[red]unhealthy[/red]",
        )
    console.print(table)
    console.print(f"state dir: {s.state_dir}")
    if not ok:
        raise typer.Exit(1)


@app.command()
def logs(
    service: str = typer.Argument(..., help="mosquitto, kafka or influxdb"),
    lines: int = typer.Option(50, "--lines", "-n", help="how many lines from the end"),
    follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new lines"),
) -> None:
    """Print (or follow) a server's log file."""
    svc = {x.proc.name: x for x in stack.services(get_settings())}.get(service)
    if svc is None:
        console.print(f"unknown service {service!r}")
        raise typer.Exit(2)
    log = svc.proc.log_file
    args = ["tail", f"-n{lines}"] + (["-F"] if follow else []) + [str(log)]
    sys.exit(subprocess.call(args))


@app.command()
def topics() -> None:
    """Create the Kafka topics if missing (also done by ``up``)."""
    for topic, what in asyncio.run(ensure_topics(get_settings())).items():
        console.print(f"{topic}: {what}")
