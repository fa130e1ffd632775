"""One benchmark run: the pipeline against the raw ceilings of its own parts, on the local stack.

Phases, in this order, all in one run so the ratios compare like with like on a shared
machine: raw ceilings (``bench.ceilings``); one gateway (``bench.gateway``) and one processor
(``bench.processor``) beside their raw clients; simulator -> InfluxDB sustained with the loss
ledger (``bench.e2e``, offered 1.2 x the slower of gateway and processor); latency at half the
sustained rate (``bench.latency``); memory (RSS per 10,000 devices from the end-to-end run,
state bytes from ``bench.memory``); scaling 1 vs 2 (``bench.scaling``); detector points/s
(``bench.detectors``). Prints a table, writes ``bench/results/<timestamp>.json`` and a PNG.

Example:
    $ bench/run            # full sizes, ~8 minutes
    $ bench/run --quick    # tiny sizes, a smoke test (~2 minutes)
    $ bench/run --only ceilings,latency
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from citywatch.settings import Settings

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PHASES = ("ceilings", "pipeline", "e2e", "latency", "memory", "scaling", "detectors")

#: Sizes per phase: full run and --quick (smoke test).
SIZES: dict[str, dict[str, float]] = {
    "full": {
        "mqtt_n": 50_000,
        "kafka_n": 200_000,
        "influx_n": 500_000,
        "gateway_n": 30_000,
        # ~10 s per processor run: 100,000 readings (1-2 s, polled every 0.5 s) gave
        # 50,000-78,000/s for the same code, and a no-rule floor no faster than the processor.
        "processor_n": 500_000,
        "devices": 10_000,
        "e2e_s": 60,
        "latency_s": 30,
        "memory_devices": 2_000,  # x 150 readings: full detector windows
        # Large enough that each run lasts ~10-20 s: spans of 1-2 s were mostly sampling noise.
        "scaling_gateway_n": 100_000,
        "scaling_processor_n": 300_000,
        "detector_points": 50_000,
    },
    "quick": {
        "mqtt_n": 2_000,
        "kafka_n": 5_000,
        "influx_n": 20_000,
        "gateway_n": 2_000,
        "processor_n": 20_000,
        "devices": 500,
        "e2e_s": 8,
        "latency_s": 5,
        "memory_devices": 100,
        "scaling_gateway_n": 2_000,
        "scaling_processor_n": 5_000,
        "detector_points": 2_000,
    },
}


# -- pure shaping (unit-tested) -------------------------------------------------------------
def _get(d: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _div(a: Any, b: Any) -> float | None:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return None
    return float(a) / float(b)


def ratios(r: dict[str, Any]) -> dict[str, Any]:
    """The derived figures the issue's targets are stated in.

    >>> r = {"ceilings": {"mqtt_qos1": {"per_s": 10.0}}, "e2e": {"e2e_per_s": 6.0}}
    >>> ratios(r)["e2e_vs_slowest_ceiling"], ratios(r)["slowest_ceiling"]
    (0.6, 'MQTT QoS 1')
    """
    ceilings = {
        "MQTT QoS 1": _get(r, "ceilings.mqtt_qos1.per_s"),
        "Kafka produce": _get(r, "ceilings.kafka.produce_per_s"),
        "Kafka consume": _get(r, "ceilings.kafka.consume_per_s"),
        "InfluxDB write": _get(r, "ceilings.influx_write.per_s"),
    }
    known = {k: v for k, v in ceilings.items() if isinstance(v, int | float)}
    slowest = min(known, key=lambda k: known[k]) if known else None
    return {
        "slowest_ceiling": slowest,
        "slowest_ceiling_per_s": known.get(slowest) if slowest else None,
        "e2e_vs_slowest_ceiling": _div(
            _get(r, "e2e.e2e_per_s"), known.get(slowest) if slowest else None
        ),
        "gateway_vs_mqtt_qos1": _div(
            _get(r, "pipeline.gateway_per_s"), _get(r, "ceilings.mqtt_qos1.per_s")
        ),
        "processor_vs_raw_consume": _div(
            _get(r, "pipeline.processor_per_s"), _get(r, "pipeline.raw_consume_per_s")
        ),
        "processor_floor_vs_raw_consume": _div(
            _get(r, "pipeline.processor_floor_per_s"), _get(r, "pipeline.raw_consume_per_s")
        ),
        "bare_pipeline_vs_raw_consume": _div(
            _get(r, "pipeline.bare_pipeline_per_s"), _get(r, "pipeline.raw_consume_per_s")
        ),
        "processor_vs_bare_pipeline": _div(
            _get(r, "pipeline.processor_per_s"), _get(r, "pipeline.bare_pipeline_per_s")
        ),
    }


def _n(v: Any, unit: str = "", digits: int = 0) -> str:
    if v is None:
        return "–"
    if isinstance(v, int | float):
        return f"{v:,.{digits}f}{unit}"
    return str(v)


def table_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, measured, ratio or target) rows for the printed/README table."""
    q = ratios(r)
    rows: list[tuple[str, str, str]] = []

    def add(what: str, value: str, note: str = "") -> None:
        rows.append((what, value, note))

    if "ceilings" in r:
        c = r["ceilings"]
        for qos in (0, 1):
            add(
                f"raw MQTT QoS {qos} pub→sub (bare lean clients)",
                _n(_get(c, f"mqtt_qos{qos}.per_s"), " msg/s"),
                f"delivered {_n(_get(c, f'mqtt_qos{qos}.delivered'), '', 3)}; publisher "
                f"{_n(_get(c, f'mqtt_qos{qos}.publish_per_s'), '/s')}",
            )
        add("raw Kafka produce (aiokafka, acks=all, lz4)", _n(_get(c, "kafka.produce_per_s"), "/s"))
        add("raw Kafka consume (aiokafka + JSON)", _n(_get(c, "kafka.consume_per_s"), "/s"))
        add(
            "kafka-producer-perf-test (reference)",
            _n(_get(c, "kafka_perf_test.per_s"), "/s"),
            f"{_n(_get(c, 'kafka_perf_test.record_bytes'))} B records",
        )
        add(
            "raw InfluxDB write (10k-line batches, 2 writers)",
            _n(_get(c, "influx_write.per_s"), " points/s"),
        )
    if "pipeline" in r:
        p = r["pipeline"]
        add(
            "gateway (1 process) → Kafka",
            _n(p.get("gateway_per_s"), " readings/s"),
            f"{_n(q['gateway_vs_mqtt_qos1'], ' × MQTT QoS 1', 2)} (target ≥ 0.5 ×, ≥ 20,000/s); "
            f"{_n(p.get('gateway_per_cpu_s'))} per gateway CPU-s",
        )
        add(
            "processor (1 process) → InfluxDB",
            _n(p.get("processor_per_s"), " readings/s"),
            f"{_n(q['processor_vs_raw_consume'], ' × raw consume', 3)} (target ≥ 0.5 ×, "
            "≥ 50,000/s)",
        )
        # Bounds beside the processor, each as a share of the same run's raw consume.
        bounds = (
            (
                "processor_floor",
                "  same process, every rule off, pass-through detector",
                "the most any rule set could reach (fetch, parse, lines, write, commit)",
            ),
            (
                "bare_pipeline",
                "  bare consumer → InfluxDB, pre-built lines, 2 writes in flight",
                "the most any processor could reach here (fetch, write, commit); processor "
                f"{_n(q['processor_vs_bare_pipeline'], ' × this', 2)}",
            ),
        )
        for key, label, says in bounds:
            if p.get(f"{key}_per_s") is not None:
                add(
                    label,
                    _n(p.get(f"{key}_per_s"), " readings/s"),
                    f"{_n(q[f'{key}_vs_raw_consume'], ' × raw consume', 3)}: {says}",
                )
    if "e2e" in r:
        from bench import e2e  # its retry factors; imported here, as the phases are

        e = r["e2e"]
        add(
            f"end to end, simulator → InfluxDB ({_n(e.get('devices'))} devices)",
            _n(e.get("e2e_per_s"), " readings/s"),
            f"{_n(q['e2e_vs_slowest_ceiling'], ' ×', 3)} slowest ceiling "
            f"({q['slowest_ceiling']}) (target ≥ 0.5 ×)",
        )
        add(
            "  offered by the simulator",
            _n(e.get("offered_actual_per_s"), " readings/s"),
            f"asked {_n(e.get('offered_per_s'))}/s"
            + (" (simulator-bound: it could not generate more)" if _sim_bound(e) else ""),
        )
        add(
            "  sustained for / loss ledger",
            f"{_n(e.get('e2e_span_s'), ' s')}",
            f"{_n(_get(e, 'loss.acked'))} acked, {_n(_get(e, 'loss.missing'))} missing; "
            f"broker dropped {_n(e.get('broker_dropped'))}",
        )
        for i, o in enumerate(e.get("attempts", [])[:-1]):
            add(
                f"  attempt {i + 1} (overloaded)",
                f"offered {_n(o.get('offered_actual_per_s'))}/s, through "
                f"{_n(o.get('e2e_per_s'))}/s",
                f"broker dropped {_n(o.get('broker_dropped'))}, "
                f"{_n(_get(o, 'loss.missing'))} missing: Mosquitto's queue overflowed; "
                + (
                    f"next at {e2e.RETRY_THROUGH} × what got through "
                    f"(≤ {e2e.RETRY_CAP} × its offer)"
                    if i == 0
                    else f"next at {e2e.RETRY_AGAIN} × its offer"
                ),
            )
        cpu = e.get("cpu") or {}
        if cpu.get("us_per_reading"):
            per = cpu["us_per_reading"]
            add(
                "  CPU per reading (µs), by process",
                f"{_n(per.get('total'))} µs in all, {_n(_get(cpu, 'cores.total'), ' cores', 2)}",
                ", ".join(f"{k} {_n(v)}" for k, v in per.items() if k != "total"),
            )
    if "latency" in r:
        lat = r["latency"]
        for key, label in (
            ("influx", "device ts → queryable in InfluxDB"),
            ("alert", "device ts → alert on the alerts topic"),
        ):
            add(
                f"{label} @ {_n(lat.get('offered_per_s'), '/s')}",
                " · ".join(
                    f"{p} {_n(_get(lat, f'{key}.{p}_ms'), ' ms')}" for p in ("p50", "p95", "p99")
                ),
                "target p99 < 500 ms"
                if key == "alert"
                else f"n={_n(_get(lat, key + '.n'))}, after {_n(lat.get('warmup_s'), ' s', 1)} "
                "of warm-up",
            )
    if "memory" in r:
        m = r["memory"]
        for name in ("gateway", "processor"):
            add(
                f"RSS {name} per 10,000 devices",
                _n(_get(m, f"{name}.per_10k_devices_mib"), " MiB", 1),
                f"idle {_n(_get(m, f'{name}.idle_rss_mib'), ' MiB')}, peak "
                f"{_n(_get(m, f'{name}.peak_rss_mib'), ' MiB')}",
            )
        add(
            "detector state per device-metric",
            _n(_get(m, "detector_bytes_per_device_metric"), " B"),
            "target ≤ 2,048 B",
        )
        add("rule state per device", _n(_get(m, "rule_bytes_per_device"), " B"))
    if "scaling" in r:
        sc = r["scaling"]
        for kind in ("gateways", "processors"):
            add(
                f"{kind}: 1 → 2 processes",
                f"{_n(_get(sc, f'{kind}_1.per_s'))} → {_n(_get(sc, f'{kind}_2.per_s'))} /s",
                f"{_n(sc.get(f'{kind}_speedup'), ' ×', 2)}",
            )
    if "detectors" in r:
        for name, d in r["detectors"].items():
            add(
                f"detector {name}",
                _n(d.get("points_per_s"), " points/s"),
                f"{_n(d.get('vs_passthrough'), ' × passthrough', 3)}",
            )
    for phase, err in r.get("errors", {}).items():
        add(f"{phase}: FAILED", _last_line(err))
    return rows


def _last_line(text: str) -> str:
    """The exception line of a traceback (its message may span lines: the first of them)."""
    lines = [x for x in text.splitlines() if x.strip()]
    heads = [x for x in lines if not x.startswith(" ") and ":" in x and "Traceback" not in x]
    return (heads[-1] if heads else lines[-1] if lines else "?")[:120]


def markdown(rows: list[tuple[str, str, str]]) -> str:
    out = ["| benchmark | measured | ratio / target |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(out)


# -- phases ---------------------------------------------------------------------------------
def _ensure_stack(s: Settings) -> None:
    from citywatch import stack

    if not all(ok for _, ok in stack.status(s).values()):
        stack.up(s)


def phase_pipeline(s: Settings, z: dict[str, float]) -> dict[str, Any]:
    from bench.gateway import gateway
    from bench.processor import _delete, bare, fill, processor, processor_floor, raw_consume

    # (rate, readings, rate per gateway CPU-second); older versions lack the last one.
    gw = gateway(int(z["gateway_n"]), 1)
    topic = f"citywatch.bench.{uuid.uuid4().hex[:6]}"
    n = int(z["processor_n"])
    asyncio.run(fill(s, topic, n))
    try:
        raw = asyncio.run(raw_consume(s, topic, n))
        proc = processor(s, topic, n)
        # Second, into series the first run created: that can only flatter the floor, and a
        # floor that is still far below 0.5 x raw consume is then the stronger finding.
        floor = processor_floor(s, topic, n)
    finally:
        asyncio.run(_delete(s, topic))
    bare_rate = bare(s, n)
    return {
        **dict(zip(("gateway_per_s", "gateway_readings", "gateway_per_cpu_s"), gw, strict=False)),
        "raw_consume_per_s": raw,
        "processor_per_s": proc,
        "processor_floor_per_s": floor,
        "bare_pipeline_per_s": bare_rate,
    }


def phase_memory(results: dict[str, Any], z: dict[str, float]) -> dict[str, Any]:
    from bench.gateway import _last_json

    run = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--devices", str(int(z["memory_devices"]))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out: dict[str, Any] = dict(_last_json(run.stdout + run.stderr))
    out.update(_get(results, "e2e.memory") or {})
    return out


def phase_detectors(z: dict[str, float]) -> dict[str, Any]:
    from functools import partial

    from bench.detectors import points_per_second, synthetic
    from processors.detectors.registry import DETECTORS, create

    ts, vs = synthetic(int(z["detector_points"]))
    base = points_per_second(partial(create, "passthrough"), ts, vs)
    out: dict[str, Any] = {}
    for name in DETECTORS:
        pps = base if name == "passthrough" else points_per_second(partial(create, name), ts, vs)
        out[name] = {"points_per_s": pps, "vs_passthrough": pps / base}
    return out


def _sim_bound(e: dict[str, Any]) -> bool:
    """True when the simulator delivered clearly less than it was asked to offer."""
    asked, got = e.get("offered_per_s") or 0.0, e.get("offered_actual_per_s") or 0.0
    return bool(asked) and got < 0.9 * asked


def run_all(
    s: Settings,
    phases: list[str],
    size: str,
    workdir: Path,
    log: Callable[[str], None] = print,
    sizes: dict[str, float] | None = None,
    after_phase: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the phases in order; a failed phase is retried once, then recorded in errors."""
    from bench import ceilings, e2e, latency, scaling

    z = sizes or SIZES[size]
    r: dict[str, Any] = {"errors": {}}
    steps: dict[str, Callable[[], Any]] = {
        "ceilings": lambda: ceilings.run(
            s, mqtt_n=int(z["mqtt_n"]), kafka_n=int(z["kafka_n"]), influx_n=int(z["influx_n"])
        ),
        "pipeline": lambda: phase_pipeline(s, z),
        "e2e": lambda: e2e.run(
            s,
            devices=int(z["devices"]),
            rate=_offered(r, z),
            duration=z["e2e_s"],
            workdir=workdir / "e2e",
        ),
        "latency": lambda: latency.run(
            s,
            rate=_half_load(r),
            duration=z["latency_s"],
            workdir=workdir / "latency",
            devices=int(z["devices"]),
        ),
        "memory": lambda: phase_memory(r, z),
        "scaling": lambda: scaling.run(
            s,
            gateway_n=int(z["scaling_gateway_n"]),
            processor_n=int(z["scaling_processor_n"]),
            workdir=workdir / "scaling",
        ),
        "detectors": lambda: phase_detectors(z),
    }
    for phase in PHASES:
        if phase not in phases:
            continue
        t0 = time.monotonic()
        log(f"-- {phase} (load average {os.getloadavg()[0]:.2f})")
        for attempt in (1, 2):
            try:
                _ensure_stack(s)
                r[phase] = steps[phase]()
                r["errors"].pop(phase, None)
                break
            except Exception:
                # Other jobs restart the servers now and then: one retry after `stack up`.
                err = r["errors"][phase] = traceback.format_exc()
                r.setdefault("retried", {})[phase] = err
                log(f"   {phase} failed (attempt {attempt}): {_last_line(err)}")
        log(f"   {phase}: {time.monotonic() - t0:.0f} s")
        if after_phase is not None:
            after_phase(r)
    return r


def _offered(r: dict[str, Any], z: dict[str, float]) -> float:
    """1.2 x the slowest of gateway, processor and the MQTT QoS 1 ceiling (a guess without
    them): above what the pipeline can take, so it runs flat out, but not so far above that
    the simulator falls minutes behind its schedule."""
    rates = [
        v
        for v in (
            _get(r, "pipeline.gateway_per_s"),
            _get(r, "pipeline.processor_per_s"),
            _get(r, "ceilings.mqtt_qos1.per_s"),
        )
        if isinstance(v, int | float) and v > 0
    ]
    base = min(rates) if rates else 5_000.0
    return 1.2 * (base if z["devices"] >= 1000 else min(base, 1_000.0))


def _half_load(r: dict[str, Any]) -> float:
    sustained = _get(r, "e2e.e2e_per_s")
    return 0.5 * (sustained if isinstance(sustained, int | float) and sustained > 0 else 2_000.0)


# -- output ---------------------------------------------------------------------------------
def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    bars = {
        "MQTT QoS 0": _get(r, "ceilings.mqtt_qos0.per_s"),
        "MQTT QoS 1": _get(r, "ceilings.mqtt_qos1.per_s"),
        "Kafka produce": _get(r, "ceilings.kafka.produce_per_s"),
        "Kafka consume": _get(r, "ceilings.kafka.consume_per_s"),
        "perf-test": _get(r, "ceilings.kafka_perf_test.per_s"),
        "InfluxDB write": _get(r, "ceilings.influx_write.per_s"),
        "gateway": _get(r, "pipeline.gateway_per_s"),
        "processor": _get(r, "pipeline.processor_per_s"),
        "end to end": _get(r, "e2e.e2e_per_s"),
    }
    known = {k: float(v) for k, v in bars.items() if isinstance(v, int | float) and v > 0}
    ax = axes[0]
    colours = ["tab:grey"] * 6 + ["tab:blue"] * 3
    ax.barh(list(known), list(known.values()), color=colours[-len(known) :] if known else None)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("per second (log)")
    ax.set_title("raw ceilings (grey) vs pipeline (blue)")
    ax = axes[1]
    series = _get(r, "e2e.series") or []
    for key in ("gateway", "processor"):
        pts = [(a["t"], b[key] - a[key], b["t"] - a["t"]) for a, b in itertools.pairwise(series)]
        ax.plot([t for t, _, _ in pts], [d / dt if dt else 0 for _, d, dt in pts], label=key)
    ax.set_xlabel("s")
    ax.set_ylabel("readings/s")
    ax.set_title("end to end: readings/s over the run")
    ax.legend()
    ax = axes[2]
    labels = ["p50", "p95", "p99"]
    for i, key in enumerate(("influx", "alert")):
        vals = [_get(r, f"latency.{key}.{p}_ms") or 0 for p in labels]
        ax.bar([x + 0.4 * i for x in range(3)], vals, width=0.4, label=key)
    ax.set_xticks([x + 0.2 for x in range(3)], labels)
    ax.set_ylabel("ms")
    ax.set_title(f"latency at {_n(_get(r, 'latency.offered_per_s'), '/s')}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--only", default=",".join(PHASES), help=f"comma list of {PHASES}")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    a = ap.parse_args(argv)
    phases = [p.strip() for p in a.only.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        ap.error(f"unknown phases: {sorted(unknown)}")
    s = Settings()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    size = "quick" if a.quick else "full"
    workdir = s.state_dir / "bench" / stamp
    load0, t0 = os.getloadavg(), time.monotonic()
    a.out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = a.out / f"{stamp}.json", a.out / f"{stamp}.png"

    def save(r: dict[str, Any]) -> None:
        # Written after every phase, so a run cut short keeps what it measured.
        doc = {
            "started": stamp,
            "size": size,
            "sizes": SIZES[size],
            "phases": phases,
            "wall_s": time.monotonic() - t0,
            "cpus": os.cpu_count(),
            "loadavg_start": load0,
            "loadavg_end": os.getloadavg(),
            "workdir": str(workdir),
            "ratios": ratios(r),
            "table": [list(row) for row in table_rows(r)],
            "results": r,
        }
        json_path.write_text(json.dumps(doc, indent=1, default=str))

    r = run_all(s, phases, size, workdir, after_phase=save)
    rows = table_rows(r)
    save(r)
    plot(r, png_path)
    print(markdown(rows))
    print(f"\nload average {load0[0]:.2f} → {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"results: {json_path}\nplot:    {png_path}")
    return 1 if r["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
