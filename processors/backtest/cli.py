"""``citywatch backtest``: replay recorded CSV series through a detector and score them with NAB.

Example:
    $ citywatch backtest --list
    $ citywatch backtest --detector sentinel --input nab/data --output results/ \\
          --score --labels nab/combined_windows.json
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from processors.backtest.nab_scoring import PROFILES, load_windows
from processors.backtest.runner import backtest_paths, find_inputs, score_results
from processors.detectors.registry import DEFAULT_DETECTOR, DETECTORS


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``["window=64", "name=x"]`` -> ``{"window": 64, "name": "x"}`` (Python literals or text)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--param")
        try:
            params[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            params[key] = text
    return params


def _count_rows(path: Path) -> int:
    with path.open("rb") as fh:
        return max(sum(1 for _ in fh) - 1, 0)


def backtest(
    detector: Annotated[
        str, typer.Option("--detector", "-d", help="Registered detector name (see --list).")
    ] = DEFAULT_DETECTOR,
    input_path: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            exists=True,
            help="A timestamp,value CSV or a directory searched recursively for *.csv.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Results directory: <DIR>/<same folder>/<detector>_<file> with columns "
            "timestamp,value,anomaly_score (NAB's results layout). Omit to only score.",
        ),
    ] = None,
    list_detectors: Annotated[
        bool, typer.Option("--list", help="List the registered detectors and exit.")
    ] = False,
    score: Annotated[
        bool,
        typer.Option("--score", help="Print the normalised NAB score per profile (with --labels)."),
    ] = False,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels", exists=True, dir_okay=False, help="NAB combined_windows.json for --score."
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Detector parameter NAME=VALUE (repeatable)."),
    ] = None,
) -> None:
    """Replay CSV series through an anomaly detector, write NAB-format results, optionally score.

    Each row is scored before the detector learns it (one pass, no look-ahead), as in the live
    processors.
    """
    console = Console()
    if list_detectors:
        for name in sorted(DETECTORS):
            mark = " (default)" if name == DEFAULT_DETECTOR else ""
            console.print(f"{name}{mark}: {DETECTORS[name].description}", highlight=False)
        return
    if detector not in DETECTORS:
        raise typer.BadParameter(
            f"unknown detector {detector!r}; known: {', '.join(sorted(DETECTORS))}",
            param_hint="--detector",
        )
    if input_path is None:
        raise typer.BadParameter("an input CSV or directory is required", param_hint="--input")
    if score and labels is None:
        raise typer.BadParameter("--score needs --labels combined_windows.json")
    if output is None and not score:
        raise typer.BadParameter("nothing to do: give --output and/or --score")
    params = parse_params(param or [])

    files = find_inputs(input_path)
    if not files:
        raise typer.BadParameter(f"no CSV files under {input_path}", param_hint="--input")
    root_is_file = input_path.is_file()
    total = sum(_count_rows(input_path if root_is_file else input_path / f) for f in files)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(detector, total=total)

        def advance(relative: Path, rows: int) -> None:
            progress.update(task, advance=rows, description=f"{detector}: {relative}")

        results = backtest_paths(detector, input_path, output, params, on_file=advance)
    rows = sum(len(r.scores) for r in results)
    where = f" -> {output}" if output is not None else ""
    console.print(f"{detector}: {len(results)} files, {rows} rows{where}", highlight=False)

    if score and labels is not None:
        try:
            scored = score_results(results, load_windows(labels))
        except KeyError as exc:
            raise typer.BadParameter(str(exc.args[0]), param_hint="--labels") from None
        table = Table(title=f"NAB score: {detector}")
        for col in ("profile", "normalised", "raw", "threshold"):
            table.add_column(col, justify="left" if col == "profile" else "right")
        for name in PROFILES:
            res = scored[name]
            table.add_row(name, f"{res.normalised:.1f}", f"{res.raw:.2f}", f"{res.threshold:.4g}")
        console.print(table)
