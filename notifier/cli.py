"""``citywatch notify``, ``citywatch api`` and ``citywatch orders ...`` (work orders, tokens).

Example:
    $ citywatch orders token crew-north            # prints a new bearer token once
    $ citywatch notify & citywatch api --port 8090
    $ citywatch orders list --status open
    $ citywatch orders ack 12 --by alice && citywatch orders resolve 12 --note "lamp replaced"
"""

from __future__ import annotations

import asyncio
import getpass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson
import typer
from rich.console import Console
from rich.table import Table

from citywatch.logs import setup as setup_logging
from citywatch.settings import get_settings, override

if TYPE_CHECKING:
    from notifier.store import Store

console = Console()
orders_app = typer.Typer(
    help="Work orders: list, acknowledge, resolve; crew API tokens.", no_args_is_help=True
)


def notify(
    instance: str = typer.Option(None, help="instance name (Kafka/MQTT client id)"),
    log_level: str = typer.Option("INFO", help="logging level"),
) -> None:
    """Consume alerts, keep work orders, notify crews (webhook, MQTT, e-mail), escalate."""
    from notifier.service import serve

    setup_logging(log_level)
    s = override(get_settings(), "notifier", instance=instance)
    stats = asyncio.run(serve(s))
    console.print(f"notifier stopped: {stats}")


def api(
    host: str = typer.Option(None, help="listen address (default: settings)"),
    port: int = typer.Option(None, help="listen port (default: settings)"),
    log_level: str = typer.Option("INFO", help="logging level"),
) -> None:
    """Serve the crew API and the live operations page (uvicorn)."""
    import uvicorn

    from notifier.api import create_app

    setup_logging(log_level)
    s = override(get_settings(), "notifier", api_host=host, api_port=port)
    uvicorn.run(
        create_app(s),
        host=s.notifier.api_host,
        port=s.notifier.api_port,
        log_level=log_level.lower(),
    )


def _store() -> Store:
    from notifier.store import open_store

    return open_store(get_settings())


def _ts(t: float | None) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S") if t else ""


@orders_app.command("list")
def list_orders(
    status: list[str] = typer.Option(["open", "acknowledged"], help="status (repeatable)"),
    crew: str = typer.Option(None, help="only this crew's orders"),
    district: str = typer.Option(None),
    family: str = typer.Option(None),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table"),
) -> None:
    """List work orders (active ones by default)."""
    rows = _store().list_orders(crew_id=crew, statuses=status, district=district, family=family)
    if as_json:
        for r in rows:
            print(orjson.dumps(r).decode())
        return
    t = Table(
        "id",
        "status",
        "severity",
        "kind",
        "target",
        "district",
        "crew",
        "created",
        "repeats",
        "esc",
    )
    for r in rows:
        t.add_row(
            str(r["id"]),
            r["status"],
            r["severity"],
            r["kind"],
            r["target"],
            r["district"],
            r["crew_id"],
            _ts(r["created_at"]),
            str(r["repeats"]),
            str(r["escalation_level"]),
        )
    console.print(t)


def _move(order_id: int, to: str, by: str | None, note: str | None) -> None:
    from notifier.store import Conflict, NotFound

    try:
        o = _store().transition(order_id, to, by or f"cli:{getpass.getuser()}", note)
    except (NotFound, Conflict) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"work order {o['id']}: {o['status']}")


@orders_app.command("ack")
def ack(order_id: int, by: str = typer.Option(None, help="who (default cli:<user>)")) -> None:
    """Acknowledge a work order."""
    _move(order_id, "acknowledged", by, None)


@orders_app.command("resolve")
def resolve(
    order_id: int,
    note: str = typer.Option("", help="what was done"),
    by: str = typer.Option(None, help="who (default cli:<user>)"),
) -> None:
    """Resolve a work order with a note."""
    _move(order_id, "resolved", by, note or None)


@orders_app.command("close")
def close(order_id: int, by: str = typer.Option(None, help="who (default cli:<user>)")) -> None:
    """Close a resolved work order."""
    _move(order_id, "closed", by, None)


@orders_app.command("token")
def token(
    name: str = typer.Argument(..., help="crew id (or supervisor name)"),
    role: str = typer.Option("crew", help="crew or supervisor"),
    district: list[str] = typer.Option(None, help="districts (default: the crew's config)"),
) -> None:
    """Create an API bearer token; it is printed once and stored only as a hash."""
    s = get_settings()
    if role == "crew" and not district:
        crews = {c.id: c for c in s.notifier.crews}
        if name not in crews:
            console.print(f"[red]unknown crew {name!r}; known: {sorted(crews)}[/red]")
            raise typer.Exit(1)
        district = crews[name].districts
    try:
        tok = _store().create_token(name, role, district or [])
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    print(tok)


@orders_app.command("revoke")
def revoke(name: str) -> None:
    """Revoke every token of a crew or supervisor."""
    console.print(f"revoked {_store().revoke_tokens(name)} token(s) of {name}")


@orders_app.command("kpis")
def kpis() -> None:
    """Write the work-order KPIs to InfluxDB once and print them."""
    import time

    from notifier.kpis import compute, write_kpis

    s = get_settings()
    st = _store()
    since = time.time() - s.notifier.kpi_window_s
    rows = [r for r in st.orders_between(since) if r["created_at"] >= since]
    for (d, f), v in sorted(compute(rows).items()):
        console.print(f"{d}/{f}: " + ", ".join(f"{k}={x:.3g}" for k, x in v.items()))
    n = asyncio.run(write_kpis(s, st))
    console.print(f"{n} points written to InfluxDB ({s.influx.kpi_retention_policy})")
