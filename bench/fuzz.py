"""Fuzz the gateway's decode path (``ingest.decode.decode_message``) and print the counts.

Every input must end either as readings that serialise to a canonical record InfluxDB can
store, or as rejects with a stable reason (the gateway dead-letters each with that reason).
A crash is: an exception out of decode_message, an ``internal`` reject (a decoder bug), a
message with neither readings nor rejects, or an accepted reading whose record fails
(``to_record``) or lies outside InfluxDB's time range.

Engines:
- ``mutate`` (default): a seeded structure-aware mutator written here: valid payloads of
  every format (from the simulator's encoders) plus hostile JSON, mutated by byte flips,
  splices, truncation, number/timestamp/NaN/deep-nesting/UTF-8 substitutions. Chosen over
  hypothesis for the 10^6 run because hypothesis's shrinking machinery runs ~100x slower per
  example; hypothesis covers the same path in tests/unit/test_decode_property.py.
- ``atheris``: coverage-guided libFuzzer (``pip install atheris``) on the same check.

Example:
    $ python -m bench.fuzz --n 1000000 --workers 2
    $ python -m bench.fuzz --engine atheris --n 200000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from ingest.decode import decode_message
from ingest.readings import FAMILIES, ValidationPolicy, to_record
from ingest.simulator.formats import encode

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
_TS = NOW.timestamp() - 60
_MIN_NS, _MAX_NS = -(2**63), 2**63 - 1

SAMPLE_FIELDS: dict[str, dict[str, Any]] = {
    "streetlight": {"power_state": "on", "power_w": 85.5, "voltage_v": 230.1, "current_a": 0.4,
                    "dimming_pct": 80.0, "power_factor": 0.93, "circuit_id": "c-01"},
    "bin": {"fill_ratio": 0.42, "temperature_c": 21.5, "tilt_deg": 2.0, "lid_open": False,
            "battery_v": 3.6},
    "vehicle": {"lat": 31.23, "lon": 121.47, "speed_kmh": 32.0, "heading_deg": 90.0,
                "vehicle_kind": "muck", "route_id": "r-7", "ignition": True},
    "dust": {"pm25_ugm3": 35.0, "pm10_ugm3": 80.0, "noise_dba": 61.0, "site_id": "s-3"},
}  # fmt: skip
FORMATS = ("json_native", "senml", "ttn_v3", "chirpstack_v4", "lamp_binary")
ODD_VALUES: list[bytes] = [
    b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400", b"0", b"-1", b"4294967296",
    b"1714564800000", b"18446744073709551616", b"1e-320", b"true", b"null", b'""',
    b'"0001-01-01T00:00:00Z"', b'"9999-12-31T23:59:59Z"', b'"1677-09-21T00:12:43Z"',
    b'"2026-05-01T11:59:00"', b'"\\ud800"', b'"\xff\xfe"', b'"\xed\xa0\x80"', b"[]", b"{}",
    b'"a b,c=d\\"e\\nf"', b"[" * 2000 + b"]" * 2000, b'{"a":' * 1100 + b"1" + b"}" * 1100,
]  # fmt: skip


def corpus() -> list[tuple[str, bytes]]:
    """Valid (topic, payload) pairs in every format and family."""
    out = []
    for family in FAMILIES:
        for fmt in FORMATS:
            if fmt == "lamp_binary" and family != "streetlight":
                continue
            device = f"{family[:3]}-0042"
            payload = encode(fmt, device, _TS, 7, SAMPLE_FIELDS[family])
            out.append((f"city/central/{family}/{device}/up", payload))
    batch = [{"ts": _TS - i, **SAMPLE_FIELDS["bin"]} for i in range(5)]
    out.append(("city/central/bin/bin-0042/up", orjson.dumps(batch)))
    return out


def mutate(rng: random.Random, seeds: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    topic, data = rng.choice(seeds)
    buf = bytearray(data)
    for _ in range(rng.choice((0, 1, 1, 2, 3, 6))):
        op = rng.randrange(9)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip bits
            buf[pos % len(buf)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:  # random byte
            buf[pos % len(buf)] = rng.randrange(256)
        elif op == 2:  # truncate
            del buf[pos:]
        elif op == 3:  # insert random bytes
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 4:  # splice another seed
            other = rng.choice(seeds)[1]
            cut = rng.randrange(len(other) + 1)
            buf[pos:] = other[cut:]
        elif op == 5:  # swap a JSON value for an odd one
            colon = buf.find(b":", pos)
            if colon >= 0:
                end = colon + 1
                while end < len(buf) and buf[end] not in b",}]":
                    end += 1
                buf[colon + 1 : end] = rng.choice(ODD_VALUES)
        elif op == 6:  # duplicate a chunk
            buf[pos:pos] = buf[max(0, pos - rng.randint(1, 32)) : pos]
        elif op == 7:  # oversize
            if rng.random() < 0.02:
                buf += b" " * 65536
        else:  # another device's or a broken topic
            topic = rng.choice(
                [topic.replace("0042", "0043"), topic.replace("/up", "/down"), topic + "/x",
                 topic.replace("central", "Central"), "city/central/bin/\xff/up"]
            )  # fmt: skip
    if rng.random() < 0.05:
        return topic, rng.randbytes(rng.randint(0, 64))
    return topic, bytes(buf)


@dataclass
class Stats:
    inputs: int = 0
    with_readings: int = 0
    readings: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)
    crash_count: int = 0

    def merge(self, other: Stats) -> None:
        self.inputs += other.inputs
        self.with_readings += other.with_readings
        self.readings += other.readings
        self.rejects.update(other.rejects)
        self.crash_count += other.crash_count
        self.crashes.extend(other.crashes[: max(0, 20 - len(self.crashes))])


def check_one(
    topic: str, payload: bytes, st: Stats, policy: ValidationPolicy | None = None
) -> None:
    """Decode one input and account for it; a failed expectation counts as a crash."""
    st.inputs += 1
    why = ""
    try:
        res = decode_message(topic, payload, NOW, policy=policy)
        if not res.readings and not res.rejects:
            why = "neither readings nor rejects"
        for rej in res.rejects:
            st.rejects[rej.reason] += 1
            if rej.reason == "internal":
                why = f"internal: {rej.detail}"
        for reading in res.readings:
            rec = orjson.loads(to_record(reading))
            if not (_MIN_NS < rec["ts"] < _MAX_NS) or reading.ts > NOW + timedelta(minutes=5):
                why = f"unstorable ts {reading.ts}"
        if res.readings:
            st.with_readings += 1
            st.readings += len(res.readings)
    except Exception as exc:  # exactly what the fuzzer looks for
        why = f"{type(exc).__name__}: {exc}"
    if why:
        st.crash_count += 1
        if len(st.crashes) < 20:
            st.crashes.append(f"{why} | topic={topic!r} payload={payload[:120]!r}")


def run_mutate(n: int, seed: int) -> Stats:
    rng = random.Random(seed)
    seeds = corpus()
    st = Stats()
    for _ in range(n):
        topic, payload = mutate(rng, seeds)
        check_one(topic, payload, st)
    return st


def _worker(args: tuple[int, int]) -> Stats:
    return run_mutate(*args)


def _instrument_ingest(atheris: Any) -> None:
    """Coverage for the gateway's own code only: instrument_all() (every loaded function,
    pydantic's included) takes minutes here; ingest/ is what decode_message runs."""
    import inspect

    for name, mod in list(sys.modules.items()):
        if not name.startswith("ingest.") or name.startswith("ingest.simulator"):
            continue
        for obj in vars(mod).values():
            if getattr(obj, "__module__", None) != name:
                continue
            funcs = [obj] if inspect.isfunction(obj) else []
            if inspect.isclass(obj):
                funcs = [f for f in vars(obj).values() if inspect.isfunction(f)]
            for f in funcs:
                atheris.instrument_func(f)  # patches the code object in place


def run_atheris(n: int, report: Any) -> Stats:
    """libFuzzer ends the process itself (C exit, no atexit): figures are printed every
    100,000 inputs and at the n-th."""
    import tempfile

    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

    seeds = corpus()
    st = Stats()
    # Input layout: [seed topic index][0: that topic, else: a topic from the bytes] payload.
    seed_dir = Path(tempfile.mkdtemp(prefix="cw-fuzz-corpus-"))
    for i, (_, payload) in enumerate(seeds):
        (seed_dir / f"seed{i}").write_bytes(bytes([i, 0]) + payload)

    calls = [0]

    def one(data: bytes) -> None:
        calls[0] += 1
        if calls[0] % 100_000 == 0 or calls[0] == n:
            report(st)
        if len(data) < 2:
            return
        topic = seeds[data[0] % len(seeds)][0]
        if data[1]:
            topic = topic.replace("0042", data[2:10].decode("utf-8", "replace"))
        check_one(topic, data[2:], st)
        if st.crash_count:
            raise RuntimeError(st.crashes[-1])

    _instrument_ingest(atheris)
    atheris.Setup([sys.argv[0], f"-runs={n}", "-max_len=8192", str(seed_dir)], one)
    with contextlib.suppress(SystemExit):
        atheris.Fuzz()
    return st


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="inputs in all")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--engine", choices=("mutate", "atheris"), default="mutate")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args()
    t0 = time.perf_counter()

    def report(st: Stats) -> None:
        wall = time.perf_counter() - t0
        out = {
            "engine": a.engine,
            "inputs": st.inputs,
            "with_readings": st.with_readings,
            "readings": st.readings,
            "rejected_messages_by_reason": dict(st.rejects.most_common()),
            "crashes": st.crash_count,
            "wall_s": round(wall, 1),
            "inputs_per_s": round(st.inputs / wall),
        }
        if a.json:
            print(json.dumps(out, indent=1), flush=True)
        else:
            for k, v in out.items():
                print(f"{k:>28}: {v}")
            for c in st.crashes:
                print("CRASH", c, flush=True)

    if a.engine == "atheris":
        st = run_atheris(a.n, report)
    else:
        per = -(-a.n // a.workers)
        jobs = [(per, a.seed * 1000 + w) for w in range(a.workers)]
        st = Stats()
        with multiprocessing.Pool(a.workers) as pool:
            for part in pool.imap_unordered(_worker, jobs):
                st.merge(part)
        report(st)
    sys.exit(1 if st.crash_count else 0)


if __name__ == "__main__":
    main()
