"""Bytes of processor state per device and per device-metric (target <= 2 KiB per device-metric).

Feeds an Engine (all registered rules and the configured detector) ``--readings`` (150) each
from N simulated-looking devices of all families, so every detector window (128 points) is
full, as in a steady stream (with 20 each, before 2026-12-04, windows were a sixth full and
the state looked 25 % smaller than it is), and measures the heap it holds with tracemalloc,
beside the same feed through an engine with no rules and the pass-through detector.

Example:
    $ .venv/bin/python -m bench.memory --devices 2000
"""

from __future__ import annotations

import argparse
import gc
import json
import tracemalloc

from bench.processor import records
from processors.config import RulesConfig
from processors.engine import Engine
from processors.sinks.lines import clear_caches


def held_bytes(cfg: RulesConfig, recs: list[dict[str, object]], city: object = None) -> int:
    # Each configuration pays for its own line-protocol caches (~110 B of series prefix per
    # device): before 2026-12-04 the first, full one paid for all three, and its per-device
    # reading prefixes were counted as detector state.
    clear_caches()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    eng = Engine(cfg, city)
    for i in range(0, len(recs), 5000):
        eng.process(recs[i : i + 5000])  # type: ignore[arg-type]
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del eng
    return used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=2_000)
    ap.add_argument("--readings", type=int, default=150, help="per device")
    a = ap.parse_args()
    import orjson

    recs = [orjson.loads(v) for _, v in records(a.devices * a.readings, devices=a.devices)]
    cfg = RulesConfig()
    fams = ("streetlight", "bin", "vehicle", "dust")
    metrics_per_dev = sum(len(cfg.detectors.metrics.get(f, [])) for f in fams) / len(fams)
    rules_only = RulesConfig()
    rules_only.detectors.name = "passthrough"
    bare = RulesConfig(disabled_rules=list(_all_rules()))
    bare.detectors.name = "passthrough"
    full, rules, empty = (held_bytes(c, recs) for c in (cfg, rules_only, bare))
    det_per_dm = (full - rules) / (a.devices * metrics_per_dev)
    rules_per_dev = (rules - empty) / a.devices
    print(
        f"devices: {a.devices}; detector {cfg.detectors.name} on "
        f"{metrics_per_dev:.2f} metrics per device on average"
    )
    print(f"detector state: {det_per_dm:,.0f} B per device-metric (target <= 2048)")
    print(f"rule state:     {rules_per_dev:,.0f} B per device (all rules)")
    print(f"total:          {(full - empty) / a.devices:,.0f} B per device")
    print(
        json.dumps(
            {
                "detector_bytes_per_device_metric": det_per_dm,
                "rule_bytes_per_device": rules_per_dev,
                "total_bytes_per_device": (full - empty) / a.devices,
            }
        )
    )


def _all_rules() -> list[str]:
    from processors.rules.registry import RULES

    return list(RULES)


if __name__ == "__main__":
    main()
