"""``citywatch evaluate`` and the demo's last step: read the run's truth and ledger, collect what
the pipeline holds, score, print, optionally write the scorecard as JSON.

Example:
    >>> ok = run_evaluation(settings, truth=Path("truth.jsonl"), ledger=None, city_model=None,
    ...                     alerts_file=None, use_kafka=True, use_influx=True, json_out=None,
    ...                     timeout=60.0, console=Console())  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from citywatch.citymodel import DEFAULT_INTERVALS_S
from ingest.simulator.ledger import Ledger, ledger_path
from ingest.simulator.truth import parse_iso, read_truth
from processors.evaluate.collect import collect
from processors.evaluate.losses import compare
from processors.evaluate.render import render
from processors.evaluate.scorecard import NS, alerts_from_events, faults_from_truth, score


def run_evaluation(
    settings: Any,
    *,
    truth: Path,
    ledger: Path | None,
    city_model: Path | None,
    alerts_file: Path | None,
    use_kafka: bool,
    use_influx: bool,
    json_out: Path | None,
    timeout: float,
    console: Any,
) -> bool:
    """Read everything, score, print; True when every target is met and nothing was lost."""
    import asyncio

    entries = read_truth(truth)
    led = Ledger.load(ledger or ledger_path(truth))
    sim_start, sim_end = parse_iso(led.meta["sim_start"]), parse_iso(led.meta["sim_end"])
    since_ns = int((float(led.meta.get("wall_start", 0.0)) - 5.0) * NS)
    intervals: dict[str, float] = dict(DEFAULT_INTERVALS_S)
    model_path = city_model or (Path(led.meta["city_model"]) if "city_model" in led.meta else None)
    if model_path is not None and model_path.exists():
        from citywatch.citymodel import CityModel

        intervals.update(CityModel.load(model_path).intervals_s)
    got = asyncio.run(
        collect(
            settings,
            since_ns=since_ns,
            t0=sim_start - 3600,
            t1=sim_end + 3600,
            alerts_from_kafka=alerts_file is None,
            use_kafka=use_kafka,
            use_influx=use_influx,
            limit_s=timeout,
        )
    )
    if alerts_file is not None:
        got.events = [orjson.loads(x) for x in alerts_file.read_bytes().splitlines() if x.strip()]
    card = score(
        faults_from_truth(entries),
        alerts_from_events(got.events),
        sim_start=sim_start,
        sim_end=sim_end,
        intervals_s=intervals,
    )
    stages = []
    if use_kafka:
        stages.append(compare("kafka", led.acked, got.kafka))
    if got.influx is not None:
        stages.append(compare("influxdb", led.acked, got.influx))
    for note in got.notes:
        console.print(f"[yellow]{note}[/]")
    render(console, card, led, stages, got.dead, got.complete)
    if json_out is not None:
        kinds = sorted(card.kinds.values(), key=lambda k: k.kind)
        report = {
            "kinds": [k.as_dict() for k in kinds],
            "other_alerts": dict(card.other_alerts),
            "ignored_alerts": card.ignored_alerts,
            "ledger": {
                "acked": led.readings_acked,
                "stages": [s.__dict__ for s in stages],
                "deadletter": dict(got.dead),
                "malformed_acked": dict(led.malformed_by_reason),
            },
        }
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    lossless = all(s.missing == 0 for s in stages)
    return card.ok and lossless and got.complete
