"""Offline scorecard of the rules: simulator stream -> decode -> Engine -> docs/faults.md match.

No servers: the simulator's deterministic message stream is decoded like the gateway does
(``decode_message``, canonical records), fed to ``Engine.process`` in batches, and the
raised alerts are scored against the simulator's ground truth with ``processors.evaluate``.
Transport faults (duplicates, out-of-order, clock skew) stay on, as in a real run.

Example:
    $ .venv/bin/python bench/rules_scorecard.py --seed 4 --hours 16 --rate 0.3 --scale 3
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson

from ingest.decode import decode_message
from ingest.readings import from_record, to_record
from ingest.simulator.config import SimConfig
from ingest.simulator.engine import Simulation
from processors.config import RulesConfig
from processors.engine import Engine
from processors.evaluate import alerts_from_events, faults_from_truth, score


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hours", type=float, default=16.0)
    ap.add_argument("--rate", type=float, default=0.02, help="fault rate per kind")
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--batch", type=int, default=2000)
    a = ap.parse_args()
    cfg = SimConfig(seed=a.seed, scale=a.scale, sim_seconds=a.hours * 3600, fault_rate=a.rate)
    sim = Simulation(cfg, now=1_717_243_200.0)
    eng = Engine(RulesConfig(), sim.city)
    events: list[dict[str, Any]] = []
    batch: list[dict[str, Any]] = []
    n = 0
    t = time.perf_counter()

    def flush() -> None:
        nonlocal n, batch
        out = eng.process(batch)
        events.extend(orjson.loads(e.to_json()) for e in out.events)
        n += len(batch)
        batch = []

    for m in sim.messages():
        if m.kind != "reading":
            continue
        res = decode_message(m.topic, m.payload, datetime.fromtimestamp(m.t, UTC))
        batch.extend(from_record(to_record(r)) for r in res.readings)
        if len(batch) >= a.batch:
            flush()
    flush()
    card = score(
        faults_from_truth(sim.truth()), alerts_from_events(events), sim_start=sim.t0, sim_end=sim.t1
    )
    print(f"{n} readings, {len(events)} alert events, {time.perf_counter() - t:.0f} s")
    for kind, s in sorted(card.kinds.items()):
        d = s.as_dict()
        print(
            f"{kind:22s} faults={d.get('faults')} alerts={d.get('alerts')} "
            f"recall={d.get('recall')} precision={d.get('precision')} "
            f"median delay={d.get('median_delay_s')} s"
        )
    raised = Counter(e["kind"] for e in events if e["state"] == "raised")
    extra = {k: v for k, v in raised.items() if k not in card.kinds}
    print("alerts of kinds outside the contract:", extra or "none")


if __name__ == "__main__":
    main()
