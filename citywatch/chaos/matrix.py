"""The fault matrix: cases from a spec, run one after another on one private stack, printed as
a component x fault table; ``chaos_command`` is ``citywatch chaos``.

Example:
    >>> parse_cases("gateway:kill9,processor:stall")
    [('gateway', 'kill9'), ('processor', 'stall')]
    >>> len(parse_cases("all"))
    12
    >>> results = run_matrix(Settings(), parse_cases("all"))  # doctest: +SKIP
    >>> print(format_matrix(results))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import orjson

from citywatch.chaos.harness import CaseResult, Chaos
from citywatch.settings import Settings

COMPONENTS = ("gateway", "processor", "kafka", "influxdb", "mosquitto", "notifier")
FAULTS = ("kill9", "stall")
WORKERS = ("gateway", "processor", "notifier")


def format_matrix(results: list[CaseResult]) -> str:
    notify = any("notifier" in r.max_rss_mb for r in results)
    head = (
        f"{'component':<10} {'fault':<6} {'acked':>6} {'lost':>5} {'dup kafka':>9} "
        f"{'dup influx':>10} {'alert dup':>9} {'recovery s':>10}"
    )
    if notify:
        head += (
            f" {'alerts':>6} {'notif lost':>10} {'notif dup':>9} {'resent':>6} {'notif rec s':>11}"
        )
    head += "  max RSS MB gw/proc" + ("/notif" if notify else "")
    lines = [head, "-" * len(head)]
    for r in results:
        rec = "-" if r.recovery_s is None else f"{r.recovery_s:.1f}"
        line = (
            f"{r.component:<10} {r.fault:<6} {r.acked:>6} {r.lost:>5} {r.dup_kafka:>9} "
            f"{r.dup_influx:>10} {r.alert_dups:>9} {rec:>10}"
        )
        if notify:
            nrec = "-" if r.notif_recovery_s is None else f"{r.notif_recovery_s:.1f}"
            line += (
                f" {r.alerts:>6} {r.notif_lost:>10} {r.notif_dups:>9} {r.notif_resent:>6} "
                f"{nrec:>11}"
            )
        rss = [r.max_rss_mb.get(w, 0.0) for w in WORKERS if w != "notifier" or notify]
        line += "  " + "/".join(f"{x:.0f}" for x in rss)
        lines.append(line + (f"  {r.note.strip()}" if r.note else ""))
    return "\n".join(lines)


def run_matrix(
    base: Settings,
    cases: list[tuple[str, str]],
    *,
    stall_s: float = 30.0,
    rate: float = 200.0,
    out: Path | None = None,
    log: Callable[[str], None] = print,
    notify_all: bool = False,
) -> list[CaseResult]:
    chaos = Chaos(base, log=log)
    log(f"private stack under {chaos.dir}")
    results: list[CaseResult] = []
    try:
        chaos.up()
        for component, fault in cases:
            log(f"case {component} {fault} ...")
            r = chaos.run_case(
                component, fault, rate=rate, stall_s=stall_s, notify=True if notify_all else None
            )
            log(f"  -> lost {r.lost} of {r.acked}, recovery {r.recovery_s}s {r.note}")
            if "notifier" in r.max_rss_mb:
                log(
                    f"  -> notifications: {r.notified} of {r.alerts} alerts, {r.notif_lost} "
                    f"lost, {r.notif_dups} dup, {r.notif_resent} resent, recovery "
                    f"{r.notif_recovery_s}s"
                )
            results.append(r)
    finally:
        chaos.down()
    if out is not None:
        out.write_bytes(orjson.dumps([asdict(r) for r in results], option=orjson.OPT_INDENT_2))
    return results


def parse_cases(spec: str) -> list[tuple[str, str]]:
    if spec == "all":
        return [(c, f) for c in COMPONENTS for f in FAULTS]
    cases = []
    for part in spec.split(","):
        component, _, fault = part.strip().partition(":")
        if component not in COMPONENTS or fault not in FAULTS:
            raise ValueError(f"bad case {part!r}: use component:fault with {COMPONENTS} x {FAULTS}")
        cases.append((component, fault))
    return cases


def chaos_command(
    cases: str = "gateway:kill9,processor:stall",
    stall_s: float = 30.0,
    rate: float = 200.0,
    out: Path | None = None,
    notify_all: bool = False,
) -> None:
    """Run the fault matrix on a private stack and print component x fault -> loss/recovery.

    CASES: comma-separated component:fault (components gateway, processor, kafka, influxdb,
    mosquitto, notifier; faults kill9, stall) or "all". Notifier cells also run the notifier
    and count notifications; --notify-all does so in every cell.
    """
    import typer

    from citywatch.settings import get_settings

    results = run_matrix(
        get_settings(),
        parse_cases(cases),
        stall_s=stall_s,
        rate=rate,
        out=out,
        notify_all=notify_all,
    )
    print(format_matrix(results))
    if any(
        r.lost or r.dup_influx or r.alert_dups or r.notif_lost or r.notif_dups or r.notif_bad
        for r in results
    ):
        raise typer.Exit(1)
