"""``citywatch devices add|revoke|list``: per-device broker credentials (and certificates).

Every change regenerates Mosquitto's password file and ACL and reloads it with SIGHUP.
The password is printed once; only its hash is kept.

Example:
    $ citywatch devices add bin-0042
    $ citywatch devices add lamp-0001 --cert-out ./lamp-0001   # + a TLS client certificate
    $ citywatch devices revoke bin-0042
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from citywatch.security.devices import DeviceError, DeviceRegister, apply
from citywatch.security.tls import BrokerTls
from citywatch.settings import get_settings

app = typer.Typer(help="Per-device MQTT credentials (password file + ACL).", no_args_is_help=True)
console = Console()


def _reload_note(reloaded: bool) -> None:
    console.print(
        "broker reloaded (SIGHUP)" if reloaded else "broker not running: applies at next start"
    )


@app.command()
def add(
    device_id: str = typer.Argument(..., help="the device id (= MQTT username)"),
    password_file: Path | None = typer.Option(
        None, help="read the password from this file instead of generating one"
    ),
    cert_out: Path | None = typer.Option(
        None, help="also issue a TLS client certificate (CN = device id) into this directory"
    ),
) -> None:
    """Register a device (or give it a new password); prints the password once."""
    s = get_settings()
    serial: int | None = None
    if cert_out is not None:
        cert, key, serial = BrokerTls(s).issue_client(device_id)
        cert_out.mkdir(parents=True, exist_ok=True)
        (cert_out / f"{device_id}.crt").write_bytes(cert)
        key_path = cert_out / f"{device_id}.key"
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        (cert_out / "ca.crt").write_bytes(BrokerTls(s).ca_cert.read_bytes())
    given = password_file.read_text().strip() if password_file else None
    try:
        pw = DeviceRegister(s).add(device_id, given, cert_serial=serial)
    except DeviceError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    _reload_note(apply(s))
    if given is None:
        # The one place a secret is shown: to the operator who asked for it, never to a log.
        typer.echo(f"{device_id} password: {pw}")
    if cert_out is not None:
        console.print(f"certificate, key and CA in {cert_out}")


@app.command()
def revoke(device_id: str = typer.Argument(..., help="the device id")) -> None:
    """Remove a device's credentials (and certificate): it can no longer connect."""
    s = get_settings()
    gone = DeviceRegister(s).revoke(device_id)
    if gone is None:
        console.print(f"[yellow]{device_id} is not registered[/yellow]")
        raise typer.Exit(1)
    _reload_note(apply(s))
    console.print(f"{device_id} revoked")


@app.command("list")
def list_() -> None:
    """Registered devices, and ids seen on uplinks without credentials (auto-registered)."""
    reg = DeviceRegister(get_settings())
    table = Table("device", "added", "login")
    for d in reg.load().values():
        login = "password" + (" + certificate" if d.cert_serial is not None else "")
        table.add_row(d.device_id, d.added_at, login)
    for device_id in reg.auto_registered():
        table.add_row(device_id, "-", "[yellow]auto (none)[/yellow]")
    console.print(table)
