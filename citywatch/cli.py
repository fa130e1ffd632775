"""The ``citywatch`` command line: one entry point for the stack, the pipeline and the tools.

Example:
    $ citywatch stack up && citywatch stack status
"""

from __future__ import annotations

import typer

from citywatch.sim_cli import evaluate, simulate
from citywatch.stack.cli import app as stack_app
from ingest.cli import gateway
from processors.backtest.cli import backtest
from processors.cli import process

app = typer.Typer(
    help="citywatch: municipal sensor ingestion (MQTT -> Kafka -> processors -> InfluxDB).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

app.add_typer(stack_app, name="stack")
app.command("gateway")(gateway)
app.command("process")(process)
app.command("backtest")(backtest)
app.command("simulate")(simulate)
app.command("evaluate")(evaluate)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
