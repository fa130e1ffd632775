"""``citywatch simulate`` and ``citywatch evaluate``: drive the city simulator, score the pipeline.

Example:
    $ citywatch simulate --seed 1 --scale 1 --speed 60 --duration 120 --truth out/truth.jsonl
    $ citywatch evaluate --truth out/truth.jsonl
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from citywatch.settings import Settings, get_settings

console = Console()


def default_city_model_path(settings: Settings) -> Path:
    """Where the simulator writes and the processors read the city model by default."""
    return settings.processor.city_model or settings.state_dir / "city.json"


def _parse_start(text: str) -> float | None:
    if text in ("", "auto"):
        return None
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _parse_rates(text: str) -> dict[str, float]:
    from ingest.simulator.truth import CONTRACT_KINDS

    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, value = part.partition("=")
        if kind not in CONTRACT_KINDS:
            raise typer.BadParameter(f"unknown fault kind {kind!r}", param_hint="--fault-rates")
        out[kind] = float(value)
    return out


def simulate(
    seed: int = typer.Option(
        1, help="random seed: the same seed gives the same city, readings and faults"
    ),
    scale: int = typer.Option(
        1, min=1, help="districts of ~300-600 devices each (250 ≈ 100,000 devices)"
    ),
    speed: float = typer.Option(
        60.0,
        help="simulated seconds per wall second (60: a day in 24 min); "
        "0 = as fast as the broker acknowledges",
    ),
    duration: float = typer.Option(
        None, help="wall seconds to run; the simulated span is duration × speed"
    ),
    wall_limit: float = typer.Option(
        None,
        help="stop publishing after this many wall seconds even if the simulated span is not "
        "done (a benchmark offering more than the machine can generate); the ledger records "
        "where the stream stopped",
    ),
    sim_hours: float = typer.Option(
        None,
        help="simulated hours instead of --duration "
        "(default 16: 16:00 -> 08:00 local, every fault kind fits)",
    ),
    start: str = typer.Option(
        "auto",
        help="simulated start, ISO 8601 (UTC unless an offset is given); "
        "auto = the latest 16:00 local whose run ends before now",
    ),
    truth: Path = typer.Option(
        Path("out/truth.jsonl"), help="ground-truth JSON Lines (docs/faults.md)"
    ),
    ledger: Path = typer.Option(
        None, help="acked-readings ledger [default: <truth stem>.ledger.json]"
    ),
    city_model: Path = typer.Option(
        None,
        help="write the city model here "
        "[default: settings.processor.city_model or <state_dir>/city.json]",
    ),
    fault_rate: float = typer.Option(
        0.02,
        help="share of eligible targets that get one fault of each kind "
        "(>= 1 per kind where the window allows)",
    ),
    fault_rates: str = typer.Option("", help="per-kind overrides, e.g. 'lamp_out=0.1,bin_fire=0'"),
    transport_rate: float = typer.Option(
        0.002, help="per-message probability of each of: duplicate, out-of-order, malformed"
    ),
    clock_skew_rate: float = typer.Option(
        0.01, help="share of (quiet) devices whose clock runs minutes ahead for a while"
    ),
    presence: bool = typer.Option(True, help="publish online/offline status messages (…/status)"),
    topic_root: str = typer.Option(
        "city",
        help="first topic level; e.g. 'city/_bench' keeps a benchmark away from the gateways",
    ),
    window: int = typer.Option(
        None, help="QoS 1 publishes in flight [default: settings.mqtt.max_inflight_messages]"
    ),
    mqtt_client: str = typer.Option(
        "fast", help="fast (lean MQTT 3.1.1 publisher) or paho (citywatch.mqtt.AsyncMqtt)"
    ),
    dry_run: bool = typer.Option(
        False, help="generate everything and write the files, but publish nothing"
    ),
    obey_commands: bool = typer.Option(
        False, help="lamps take commands from …/down and acknowledge them (see docs/commands.md)"
    ),
    ignore_commands: str = typer.Option(
        "", help="with --obey-commands: comma-separated lamp ids that never answer (failure paths)"
    ),
) -> None:
    """Simulate the city's devices over MQTT, with faults, and write the ground truth and ledger."""
    from citywatch.citymodel import CityModel
    from ingest.simulator.config import SimConfig
    from ingest.simulator.engine import Simulation
    from ingest.simulator.ledger import Ledger, ledger_path
    from ingest.simulator.truth import iso, write_truth

    settings = get_settings()
    if duration is not None and sim_hours is not None:
        raise typer.BadParameter("give --duration or --sim-hours, not both")
    if duration is not None:
        if speed <= 0:
            raise typer.BadParameter("--duration needs --speed > 0; use --sim-hours")
        sim_seconds = duration * speed
    else:
        sim_seconds = (sim_hours if sim_hours is not None else 16.0) * 3600.0
    cfg = SimConfig(
        seed=seed,
        scale=scale,
        start=_parse_start(start),
        sim_seconds=sim_seconds,
        fault_rate=fault_rate,
        fault_rates=_parse_rates(fault_rates),
        transport_rate=transport_rate,
        clock_skew_rate=clock_skew_rate,
        presence=presence,
        topic_root=topic_root,
    )
    t = time.perf_counter()
    city = CityModel.generate(seed, scale, settings.city)
    model_path = city_model or default_city_model_path(settings)
    city.save(model_path)
    sim = Simulation(cfg, city)
    console.print(
        f"city: {len(city.devices)} devices in {len(city.districts)} district(s) -> {model_path} "
        f"({time.perf_counter() - t:.1f} s)\n"
        f"simulated {iso(sim.t0)} .. {iso(sim.t1)} ({sim_seconds / 3600:.2f} h, local "
        f"{city.local_time(sim.t0):%a %H:%M} ..), speed {speed or 'max'}"
    )
    if cfg.start is not None and sim.t1 > time.time() + 300:
        console.print(
            "[yellow]warning: the run ends in the future; the gateway will "
            "dead-letter readings more than 5 min ahead of its clock[/]"
        )
    ledger_file = ledger or ledger_path(truth)
    if dry_run:
        t = time.perf_counter()
        led = Ledger(
            {"seed": seed, "sim_start": iso(sim.t0), "sim_end": iso(sim.t1), "dry_run": True}
        )
        for _msg in sim.messages():
            led.counts["messages_published"] += 1
        wall = time.perf_counter() - t
        stats: dict[str, Any] = {"wall_s": wall, "rate": led.counts["messages_published"] / wall}
    else:
        from ingest.simulator.publisher import publish

        def progress(p: dict[str, Any]) -> None:
            console.print(
                f"  {p['elapsed_s']:6.0f} s  sim {iso(p['sim_time'])}  published "
                f"{p['published']:>9}  acked {p['acked']:>9}  behind {p['lag_s']:.1f} s"
            )

        kw: dict[str, Any] = {
            "speed": speed,
            "window": window,
            "client": mqtt_client,
            "progress": progress,
            "wall_limit_s": wall_limit,
        }
        if obey_commands:
            from ingest.simulator.downlink import run_with_commands

            ignore = [x for x in ignore_commands.split(",") if x]
            res = asyncio.run(run_with_commands(sim, settings, ignore=ignore, **kw))
        else:
            res = asyncio.run(publish(sim, settings, **kw))
        led = res.ledger
        stats = {
            "wall_s": res.wall_seconds,
            "rate": res.rate,
            "lag": res.max_lag_s,
            "drained": res.drained,
            "stopped_at": led.meta.get("stopped_at"),
        }
    entries = sim.truth()
    write_truth(truth, entries)
    led.meta["truth"] = str(truth)
    led.meta["city_model"] = str(model_path)
    led.save(ledger_file)
    _summary(sim, led, entries, stats, truth, ledger_file)


def _summary(
    sim: Any,
    led: Any,
    entries: list[dict[str, Any]],
    stats: dict[str, Any],
    truth: Path,
    ledger: Path,
) -> None:
    c = led.counts
    table = Table(title="simulation", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("messages published", f"{c['messages_published']:,}")
    if "messages_acked" in c or not led.meta.get("dry_run"):
        table.add_row("messages acked", f"{c['messages_acked']:,}")
        table.add_row("messages failed", f"{c['messages_failed']:,}")
        table.add_row("readings published", f"{c['readings_published']:,}")
        table.add_row("readings acked (distinct device, seq)", f"{led.readings_acked:,}")
        table.add_row(
            "malformed acked", f"{c['malformed_acked']:,} {dict(led.malformed_by_reason)}"
        )
        table.add_row("status acked", f"{c['status_acked']:,}")
    for fam in ("streetlight", "bin", "vehicle", "dust"):
        table.add_row(f"readings generated: {fam}", f"{sim.stats[f'readings_{fam}']:,}")
    table.add_row("wall time", f"{stats['wall_s']:.1f} s")
    table.add_row("msg/s", f"{stats['rate']:,.0f}")
    if "lag" in stats:
        table.add_row("max behind schedule", f"{stats['lag']:.1f} s")
        if not stats["drained"]:
            table.add_row("[red]unacked at exit[/]", "yes")
        if stats.get("stopped_at"):
            table.add_row("[yellow]stopped by --wall-limit at[/]", str(stats["stopped_at"]))
    console.print(table)
    kinds = Counter(e["kind"] for e in entries)
    wanted = sim.ctx.plan.wanted
    ft = Table(title=f"faults -> {truth}")
    ft.add_column("kind")
    ft.add_column("injected", justify="right")
    ft.add_column("planned", justify="right")
    placed = sim.ctx.plan.placed()
    for kind in sorted(set(kinds) | set(wanted)):
        note = "" if kinds[kind] or not wanted.get(kind) else " (window does not allow it)"
        planned = str(placed.get(kind, 0)) if kind in wanted or kind in placed else "–"
        ft.add_row(kind, f"{kinds[kind]}{note}", planned)
    console.print(ft)
    console.print(f"ledger -> {ledger}")


def evaluate(
    truth: Path = typer.Option(Path("out/truth.jsonl"), help="ground truth written by simulate"),
    ledger: Path = typer.Option(None, help="[default: <truth stem>.ledger.json]"),
    city_model: Path = typer.Option(
        None, help="city model (intervals, known targets) [default: the ledger's]"
    ),
    alerts_file: Path = typer.Option(
        None, help="read alert events from this JSON Lines file instead of Kafka"
    ),
    kafka: bool = typer.Option(True, help="read alerts, readings and dead letters from Kafka"),
    influx: bool = typer.Option(True, help="count readings in InfluxDB"),
    json_out: Path = typer.Option(None, "--json", help="also write the scorecard as JSON"),
    timeout: float = typer.Option(60.0, help="seconds to spend reading each Kafka topic"),
) -> None:
    """Score alerts against the ground truth and account for every acked reading."""
    from processors.evaluate import run_evaluation

    ok = run_evaluation(
        get_settings(),
        truth=truth,
        ledger=ledger,
        city_model=city_model,
        alerts_file=alerts_file,
        use_kafka=kafka,
        use_influx=influx,
        json_out=json_out,
        timeout=timeout,
        console=console,
    )
    raise typer.Exit(0 if ok else 1)
