"""The evaluation printed with rich: scorecard, loss ledger and dead letters, each within 80
columns (a terminal or a log).

Example:
    >>> from rich.console import Console
    >>> render(Console(width=80), card, led, stages, dead, complete=True)  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ingest.simulator.ledger import Ledger
from ingest.simulator.truth import CONTRACT_KINDS
from processors.evaluate.losses import StageCount
from processors.evaluate.scorecard import (
    PRECISION_TARGET,
    RECALL_TARGET,
    KindScore,
    Scorecard,
)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def _delays(ks: KindScore) -> str:
    """Median and p95 detection delay in whole seconds: ``"317 / 442 s"``."""
    if ks.median_delay_s is None or ks.p95_delay_s is None:
        return "–"
    return f"{ks.median_delay_s:.0f} / {ks.p95_delay_s:.0f} s"


def render(
    console: Any,
    card: Scorecard,
    led: Ledger,
    stages: list[StageCount],
    dead: Counter[str],
    complete: bool,
) -> None:
    """Print the scorecard, the loss ledger and the dead letters; each fits 80 columns.

    The scorecard leaves out the alert count and the delays in reporting intervals (both are
    in ``as_dict``) so that a log or an 80-column terminal shows every kind and figure whole;
    a kind below target is printed red and named under the table.
    """
    from rich import box
    from rich.table import Table

    t = Table(
        title=f"scorecard (targets: recall ≥ {RECALL_TARGET:.0%}, "
        f"precision ≥ {PRECISION_TARGET:.0%})",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
    )
    for col in ("kind", "faults", "found", "false", "recall", "precision", "delay p50 / p95"):
        t.add_column(col, justify="left" if col == "kind" else "right", no_wrap=True)
    kinds = sorted(card.kinds.values(), key=lambda k: CONTRACT_KINDS.index(k.kind))
    for ks in kinds:
        t.add_row(
            ks.kind if ks.ok else f"[red]{ks.kind}[/]",
            str(ks.faults),
            str(ks.detected),
            str(len(ks.false_alerts)),
            _pct(ks.recall),
            _pct(ks.precision),
            _delays(ks),
        )
    console.print(t)
    below = [ks.kind for ks in kinds if not ks.ok]
    if below:
        console.print(f"[red]below target:[/] {', '.join(below)}")
    elif kinds:
        console.print(f"[green]every kind at target[/] ({len(kinds)} kinds)")
    if card.other_alerts:
        console.print(f"other alert kinds (not scored): {dict(card.other_alerts)}")
    if card.ignored_alerts:
        console.print(f"alerts from outside this run's window (ignored): {card.ignored_alerts}")
    lt = Table(title="loss ledger (distinct device_id, seq)")
    for col in ("stage", "readings", "missing", "extra"):
        lt.add_column(col, justify="left" if col == "stage" else "right")
    lt.add_row("published (acked by Mosquitto)", f"{led.readings_acked:,}", "", "")
    for s in stages:
        lt.add_row(s.stage, f"{s.present:,}", f"{s.missing:,}", f"{s.extra:,}")
    console.print(lt)
    for s in stages:
        if s.first_missing:
            console.print(
                f"missing in {s.stage} (first {len(s.first_missing)}): "
                + ", ".join(s.first_missing)
            )
    sent = led.malformed_by_reason
    dt = Table(title="dead letters of this run, by reason")
    dt.add_column("reason")
    dt.add_column("dead-lettered", justify="right")
    dt.add_column("malformed sent", justify="right")
    for reason in sorted(set(dead) | set(sent)):
        dt.add_row(reason, str(dead.get(reason, 0)), str(sent.get(reason, 0)))
    console.print(dt)
    if not complete:
        console.print("[yellow]a Kafka topic was not read to its end before the timeout[/]")
