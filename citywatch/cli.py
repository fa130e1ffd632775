"""The ``citywatch`` command line: one entry point for the stack, the pipeline and the tools.

Example:
    $ citywatch stack up && citywatch stack status
"""

from __future__ import annotations

import typer

from citywatch.chaos import chaos_command
from citywatch.security.cli import app as devices_app
from citywatch.sim_cli import evaluate, simulate
from citywatch.stack.cli import app as stack_app
from commands.cli import app as cmd_app
from commands.cli import downlink
from dashboards.cli import app as dashboards_app
from dashboards.cli import report
from ingest.cli import gateway
from notifier.cli import api, notify, orders_app
from processors.backtest.cli import backtest
from processors.cli import process

app = typer.Typer(
    help="citywatch: municipal sensor ingestion (MQTT -> Kafka -> processors -> InfluxDB).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

app.add_typer(stack_app, name="stack")
app.add_typer(dashboards_app, name="dashboards")
app.command("report")(report)
app.add_typer(devices_app, name="devices")
app.command("chaos")(chaos_command)
app.command("gateway")(gateway)
app.command("process")(process)
app.command("backtest")(backtest)
app.command("simulate")(simulate)
app.command("evaluate")(evaluate)
app.command("notify")(notify)
app.command("api")(api)
app.add_typer(orders_app, name="orders")
app.add_typer(cmd_app, name="cmd")
app.command("downlink")(downlink)


@app.command("native")
def native(
    action: str = typer.Argument("status", help="build: compile now if needed; status: report"),
) -> None:
    """Compiled copies of the gateway's and processor's hot modules (mypyc): build, or report."""
    import time

    from citywatch import native as _native

    if action == "build":
        t0 = time.monotonic()
        where = _native.build()
        typer.echo(f"native modules: {where} ({time.monotonic() - t0:.0f} s)")
    elif action == "status":
        where = _native.build_dir()
        built = _native.is_built(where)
        typer.echo(
            f"native modules for these sources: {where} ({'built' if built else 'not built'}); "
            f"in use: gateway {_native.active('ingest.decode')}, "
            f"processor {_native.active()}"
        )
    else:
        raise typer.BadParameter("build or status")


@app.command()
def demo(
    duration: float = typer.Option(180.0, help="wall seconds of simulation"),
    speed: float = typer.Option(
        240.0, help="simulated seconds per wall second (240: 12 h in 3 min)"
    ),
    seed: int = typer.Option(1, help="simulator seed"),
    scale: int = typer.Option(1, help="districts of ~300-600 devices"),
    fault_rate: float = typer.Option(0.02, help="share of devices that get each kind of fault"),
) -> None:
    """Run the stack, simulator, gateway and processor with a live view; print the scorecard."""
    from citywatch.demo import run_demo
    from citywatch.settings import get_settings

    ok = run_demo(
        get_settings(),
        duration=duration,
        speed=speed,
        seed=seed,
        scale=scale,
        fault_rate=fault_rate,
    )
    raise typer.Exit(0 if ok else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
