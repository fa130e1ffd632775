"""Restarts replayed in memory: what a processor killed and restarted sends differently.

For each seed, the simulator's stream (every fault kind, with the transport's duplicates,
delays and clock skew) goes through one uninterrupted engine, and through a restarted one
from each of ``--cuts`` evenly spaced kill points (``processors.evaluate.restarts``: open
episodes, checkpoints taken 5 minutes before the kill, a 15-minute replay). Prints, per alert
kind, the events the restarts missed, added or sent under another id or at another time,
summed over all cuts. No servers; the same seeds give the same table.

Example:
    $ .venv/bin/python -m bench.restarts --seeds 1 2 3 4 --hours 16 --cuts 8
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict

from processors.config import RulesConfig
from processors.evaluate.restarts import compare, cut_runs, stream


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--hours", type=float, default=16.0)
    ap.add_argument("--rate", type=float, default=0.3, help="fault rate per kind")
    ap.add_argument("--cuts", type=int, default=8, help="restarts per seed")
    a = ap.parse_args()
    t = time.perf_counter()
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    lags: dict[str, list[float]] = defaultdict(list)
    sent = runs_n = 0
    for seed in a.seeds:
        recs, city = stream(seed=seed, hours=a.hours, rate=a.rate)
        cuts = [len(recs) * (i + 1) // (a.cuts + 1) for i in range(a.cuts)]
        for run in cut_runs(recs, city, RulesConfig(), cuts):
            runs_n += 1
            sent += len(run.whole_after)
            d = compare(run)
            for kind, diffs in d.by_kind().items():
                counts[kind].update(diffs)
            for e, lag in d.moved + d.late:
                lags[e.kind].append(lag)
    print(
        f"{runs_n} restarts over seeds {a.seeds} ({a.hours:g} h each): {sent} alert events "
        f"after the kill points in the uninterrupted runs; {time.perf_counter() - t:.0f} s"
    )
    if not counts:
        print("every restarted run sent exactly what the uninterrupted one did")
    for kind in sorted(counts):
        got = ", ".join(f"{k} {v}" for k, v in sorted(counts[kind].items()))
        span = lags.get(kind)
        when = f"; moved/late by {min(span):+.0f} .. {max(span):+.0f} s" if span else ""
        print(f"{kind:22s} {got}{when}")


if __name__ == "__main__":
    main()
