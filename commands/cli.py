"""``citywatch cmd send|list|show|suggestions|confirm`` and ``citywatch downlink``.

The CLI is for the operations centre's own machine: it writes the command store directly
and acts as a supervisor named ``cli:<user>`` (``--as`` changes the name, ``--crew`` with
``--district`` acts as a crew), under the same policy as the API: district-wide commands
need ``--confirm`` and the per-target rate limit applies.

Example:
    $ citywatch cmd send switch --circuit c-c01-03 --state off --wait 60
    $ citywatch cmd send dim --district central --level 50 --confirm
    $ citywatch cmd list --state failed
    $ citywatch cmd show 3f2a9c0e5b1d4e77
"""

from __future__ import annotations

import asyncio
import getpass
import json
import time
from datetime import UTC, datetime
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from citywatch.logs import setup as setup_logging
from citywatch.settings import Settings, get_settings
from commands.model import TERMINAL, CommandError, CommandRequest
from commands.policy import Issuer, Refused
from commands.service import Submitter
from commands.store import Store, db_url

app = typer.Typer(
    help="Device commands: switch, dim, schedule, reboot, ping.", no_args_is_help=True
)
console = Console()


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _issuer(name: str | None, crew: bool, districts: list[str]) -> Issuer:
    if crew:
        if not districts:
            raise typer.BadParameter("--crew needs --district (repeatable)")
        return Issuer(name or f"cli:{getpass.getuser()}", "crew", frozenset(districts))
    return Issuer(name or f"cli:{getpass.getuser()}", "supervisor", frozenset())


def _params(
    kind: str,
    state: str | None,
    level: int | None,
    on: str | None,
    off: str | None,
    dim: str | None,
    duration: int | None,
    extra: list[str],
) -> dict[str, Any]:
    p: dict[str, Any] = {}
    if state is not None:
        p["state"] = state
    if level is not None:
        p["level_pct"] = level
    if on is not None:
        p["on"] = on
    if off is not None:
        p["off"] = off
    if dim is not None:
        # "40@00:00-05:00": level and window of the night dimming step
        try:
            lvl, window = dim.split("@")
            a, b = window.split("-")
            p |= {"dim_level_pct": int(lvl), "dim_from": a, "dim_to": b}
        except ValueError:
            raise typer.BadParameter("expected LEVEL@HH:MM-HH:MM", param_hint="--dim") from None
    if duration is not None:
        p["duration_s"] = duration
    for kv in extra:
        k, _, v = kv.partition("=")
        try:
            p[k] = json.loads(v)
        except json.JSONDecodeError:
            p[k] = v
    return p


def _target(
    device: str | None, circuit: str | None, cabinet: str | None, district: str | None
) -> tuple[str, str]:
    given = [
        (t, v)
        for t, v in (
            ("device", device),
            ("circuit", circuit),
            ("cabinet", cabinet),
            ("district", district),
        )
        if v
    ]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of --device, --circuit, --cabinet, --district")
    return given[0]


async def _submit(s: Settings, store: Store, issuer: Issuer, req: CommandRequest) -> str:
    sub = Submitter(s, store)
    try:
        cmd = await sub.submit(issuer, req, source="cli")
    finally:
        await sub.close()
    return cmd.id


def _fail(exc: Exception) -> None:
    code = getattr(exc, "status", 2)
    console.print(
        f"[red]refused ({code})[/red]: {exc}"
        if isinstance(exc, Refused)
        else f"[red]error[/red]: {exc}"
    )
    raise typer.Exit(1)


def _wait(store: Store, cmd_id: str, wait_s: float) -> str:
    deadline = time.monotonic() + wait_s
    state = "queued"
    while time.monotonic() < deadline:
        cmd = store.get(cmd_id)
        state = cmd.state if cmd else "unknown"
        if state in TERMINAL:
            break
        time.sleep(0.5)
    return state


@app.command()
def send(
    kind: str = typer.Argument(..., help="switch | dim | schedule | reboot | ping"),
    device: str = typer.Option(None, help="one device (lamp) id"),
    circuit: str = typer.Option(None, help="every lamp of a circuit"),
    cabinet: str = typer.Option(None, help="every lamp of a cabinet"),
    district: str = typer.Option(None, help="every lamp of a district (needs --confirm)"),
    state: str = typer.Option(None, help="switch: on | off"),
    level: int = typer.Option(None, help="dim: percent (0 = off, 100 = full)"),
    on: str = typer.Option(None, help="schedule: HH:MM | sunset[+-MIN]"),
    off: str = typer.Option(None, help="schedule: HH:MM | sunrise[+-MIN]"),
    dim: str = typer.Option(None, help="schedule: night dimming LEVEL@HH:MM-HH:MM"),
    duration: int = typer.Option(None, help="switch/dim: seconds the override lasts"),
    param: list[str] = typer.Option([], help="extra param key=value (JSON value), repeatable"),
    expires_in: float = typer.Option(None, help="seconds until the command expires"),
    confirm: bool = typer.Option(False, "--confirm", help="confirm a district-wide command"),
    note: str = typer.Option("", help="why (kept in the audit trail)"),
    as_: str = typer.Option(None, "--as", help="issuer name (default cli:<user>)"),
    crew: bool = typer.Option(False, "--crew", help="act as a crew (with --crew-district)"),
    crew_district: list[str] = typer.Option([], help="the crew's districts"),
    wait: float = typer.Option(0.0, help="wait up to this many seconds for a final state"),
) -> None:
    """Send a command; prints its id (and, with --wait, its final state)."""
    s = get_settings()
    ttype, target = _target(device, circuit, cabinet, district)
    try:
        req = CommandRequest(
            kind=kind,
            target_type=ttype,
            target=target,
            params=_params(kind, state, level, on, off, dim, duration, param),
            expires_in_s=expires_in,
            confirm=confirm,
            note=note,
        )
    except ValidationError as exc:
        why = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        console.print(f"[red]bad command[/red]: {why}")
        raise typer.Exit(2) from None
    store = Store(db_url(s))
    try:
        cmd_id = asyncio.run(_submit(s, store, _issuer(as_, crew, crew_district), req))
    except (Refused, CommandError) as exc:
        _fail(exc)
        return
    console.print(cmd_id)
    if wait > 0:
        final = _wait(store, cmd_id, wait)
        console.print(f"{cmd_id} {final}")
        if final != "applied":
            raise typer.Exit(1)


@app.command("list")
def list_(
    state: str = typer.Option(None, help="only this state"),
    target: str = typer.Option(None, help="only this target"),
    district: str = typer.Option(None, help="only this district"),
    limit: int = typer.Option(30, help="newest N"),
) -> None:
    """Recent commands, newest first."""
    store = Store(db_url(get_settings()))
    t = Table("id", "created", "issuer", "kind", "params", "target", "state", "detail")
    for c in store.list_commands(state=state, target=target, district=district, limit=limit):
        t.add_row(
            c.id,
            _when(c.created_at),
            c.issuer,
            c.kind,
            json.dumps(c.params),
            f"{c.target_type} {c.target}",
            c.state,
            c.detail,
        )
    console.print(t)


@app.command()
def show(cmd_id: str = typer.Argument(..., help="command id")) -> None:
    """One command: its deliveries (per device) and its audit trail."""
    store = Store(db_url(get_settings()))
    c = store.get(cmd_id)
    if c is None:
        console.print(f"[red]no command {cmd_id}[/red]")
        raise typer.Exit(1)
    console.print(
        f"[bold]{c.id}[/bold] {c.kind} {json.dumps(c.params)} -> {c.target_type} {c.target} "
        f"({c.district})\nissued by {c.issuer} ({c.role}, {c.source}) at {_when(c.created_at)}, "
        f"expires {_when(c.expires_at)}\nstate: [bold]{c.state}[/bold] {c.detail}"
    )
    t = Table("device", "state", "attempts", "sent", "acked", "done", "detail")
    for d in store.deliveries(cmd_id):
        t.add_row(
            d.device_id,
            d.state,
            str(d.attempts),
            _when(d.sent_at),
            _when(d.acked_at),
            _when(d.done_at),
            d.detail,
        )
    console.print(t)
    a = Table("time", "actor", "action", "detail")
    for e in store.audit(cmd_id):
        a.add_row(_when(e.ts), e.actor, e.action, e.detail)
    console.print(a)


@app.command()
def suggestions(
    state: str = typer.Option("pending", help="pending|confirmed|dismissed|obsolete"),
) -> None:
    """Commands suggested by alerts, waiting for a person to confirm them."""
    store = Store(db_url(get_settings()))
    t = Table("alert", "raised", "kind", "district", "suggestion", "state", "command")
    for g in store.suggestions(state=state):
        t.add_row(
            g.alert_id,
            _when(g.raised_at),
            g.alert_kind,
            g.district,
            g.text,
            g.state,
            g.cmd_id or "-",
        )
    console.print(t)


@app.command()
def confirm(
    alert_id: str = typer.Argument(..., help="the alert whose suggestion to run"),
    confirm_district: bool = typer.Option(False, help="also confirm a district-wide command"),
    as_: str = typer.Option(None, "--as", help="issuer name (default cli:<user>)"),
) -> None:
    """Run an alert's suggested command (a person's confirmation)."""
    s = get_settings()
    store = Store(db_url(s))

    async def go() -> str:
        sub = Submitter(s, store)
        try:
            cmd = await sub.confirm_suggestion(
                _issuer(as_, False, []), alert_id, confirm_district=confirm_district
            )
        finally:
            await sub.close()
        return cmd.id

    try:
        console.print(asyncio.run(go()))
    except (Refused, CommandError) as exc:
        _fail(exc)


def downlink(
    instance: str = typer.Option(None, help="stable instance name (MQTT client id)"),
    log_level: str = typer.Option("INFO", help="logging level"),
) -> None:
    """Deliver commands to devices over MQTT, track acks and confirm effects from readings."""
    from citywatch.settings import override
    from commands.downlink import serve

    setup_logging(log_level)
    s = override(get_settings(), "commands", instance=instance)
    stats = asyncio.run(serve(s))
    console.print(f"downlink stopped: {stats}")
