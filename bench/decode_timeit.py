"""CPU time of the gateway's per-message work: ``decode_message`` plus ``to_record``.

One payload per (family, format) the simulator sends (the fuzzer's sample fields), 200
devices each, so every decoder runs as in the demo. Prints microseconds per message (the best
of several rounds, CPU time) for each format and for all of them; ``--compare`` runs itself
once with the compiled decoders (citywatch.native) and once as plain Python
(``CITYWATCH_NATIVE=0``), alternately, and prints the ratio.

Example:
    $ .venv/bin/python -m bench.decode_timeit --compare
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bench.fuzz import SAMPLE_FIELDS

# The formats the simulator gives each family (ingest/simulator/citygen.py).
FORMATS: dict[str, tuple[str, ...]] = {
    "streetlight": ("json_native", "senml", "lamp_binary"),
    "bin": ("json_native", "senml", "ttn_v3"),
    "vehicle": ("json_native", "senml"),
    "dust": ("json_native", "senml", "chirpstack_v4"),
}


def measure(rounds: int, *, freeze: bool = False) -> dict[str, Any]:
    """Microseconds per message by format, and overall, in this process (``freeze``: take
    the payloads and imports out of the garbage collector's walks, which only add noise)."""
    from citywatch.native import active
    from ingest.decode import decode_message
    from ingest.readings import to_record
    from ingest.simulator.formats import encode

    t = int(time.time()) - 300
    now = datetime.now(UTC)
    sets: dict[str, list[tuple[str, bytes]]] = {}
    for family, formats in FORMATS.items():
        for fmt in formats:
            msgs = sets.setdefault(fmt, [])
            for i in range(200):
                dev = f"{family[:3]}-{i:04d}"
                body = encode(fmt, dev, t + i, i, SAMPLE_FIELDS[family])
                msgs.append((f"city/c1/{family}/{dev}/up", body))
    for msgs in sets.values():
        for topic, body in msgs:
            res = decode_message(topic, body, now)
            if res.rejects or not res.readings:
                raise RuntimeError(f"{topic} {body!r}: {res.rejects}")
    if freeze:
        gc.freeze()
    out: dict[str, Any] = {"compiled": active("ingest.decode")}
    total = 0.0
    for fmt, msgs in sets.items():
        best = float("inf")
        for _ in range(rounds):
            t0 = time.process_time()
            for topic, body in msgs * 5:
                for reading in decode_message(topic, body, now).readings:
                    to_record(reading)
            best = min(best, (time.process_time() - t0) / (5 * len(msgs)))
        out[fmt] = best * 1e6
        total += best * len(msgs)
    out["all"] = total / sum(len(m) for m in sets.values()) * 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--compare", action="store_true", help="compiled vs plain Python")
    ap.add_argument("--pairs", type=int, default=3, help="alternated runs with --compare")
    a = ap.parse_args()
    if not a.compare:
        print(json.dumps(measure(a.rounds, freeze=True)))
        return
    runs: dict[str, list[dict[str, Any]]] = {"1": [], "0": []}
    for _ in range(a.pairs):
        for flag in ("1", "0"):
            cmd = [sys.executable, "-m", "bench.decode_timeit", "--rounds", str(a.rounds)]
            env = {**os.environ, "CITYWATCH_NATIVE": flag}
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            runs[flag].append(json.loads(done.stdout.strip().splitlines()[-1]))
    if not all(r["compiled"] for r in runs["1"]):
        print("compiled decoders not built: run `citywatch native build` first")
    print(f"{'µs per message':16s} {'compiled':>9s} {'pure':>9s} {'ratio':>6s}")
    for key in [*(k for k in runs["0"][0] if k not in ("compiled", "all")), "all"]:
        nat = min(r[key] for r in runs["1"])
        pure = min(r[key] for r in runs["0"])
        print(f"{key:16s} {nat:9.2f} {pure:9.2f} {pure / nat:6.2f}")


if __name__ == "__main__":
    main()
