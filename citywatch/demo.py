"""``citywatch demo``: the whole pipeline on the local stack, watched live, then scored.

Starts the stack, writes the city model, runs one gateway and one processor as processes, runs
the simulator for a bounded time while a live terminal view (rich) shows readings/s in and
out, Kafka lag, alerts by kind and severity and the bureau's KPIs; then lets the pipeline
drain, prints the scorecard and the loss ledger, and leaves the stack running.

Example:
    $ citywatch demo --duration 180 --speed 300
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from citywatch import influxql, stack
from citywatch.kafkautil import client_kwargs, commit_group_at, end_offsets
from citywatch.mqtt import end_session
from citywatch.settings import Settings, gateway_client_id
from dashboards.kpis import lighting_rate_query
from ingest.readings import FAMILIES
from processors.config import RulesConfig

NS = 1_000_000_000

REPO = Path(__file__).resolve().parents[1]
console = Console()


def _metric(url: str, name: str) -> float:
    """Sum of a Prometheus counter/gauge over its labels (0 when unreachable)."""
    try:
        text = httpx.get(url, timeout=1.0).text
    except httpx.HTTPError:
        return 0.0
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            if sample.name in (name, f"{name}_total"):
                total += sample.value
    return total


def _influx(s: Settings, q: str) -> list[list[Any]]:
    try:
        return influxql.rows(s, q, timeout_s=5.0)
    except (httpx.HTTPError, ValueError):
        return []


def clear_window(s: Settings, city: Any, t0: float, t1: float) -> int:
    """Delete the points earlier demo runs left for this city's devices, circuits and sites
    between t0 and t1 (epoch seconds); returns how many targets that covers.

    Every demo simulates the same hours, so each run would overwrite the previous run's
    points. InfluxDB 1.x can keep a stale copy of a point overwritten while its shard compacts
    (influxdata/influxdb#24388; seen here after ten demos in one day: 704 readings of one
    truck read back with the previous run's ``received_at``), and the loss ledger then counts
    those readings as missing. Writing into an emptied window never overwrites.

    Example:
        >>> clear_window(Settings(), city, t0, t1)  # doctest: +SKIP
        521
    """
    devices = influxql.id_regex(sorted(city.devices))
    targets = sorted({*city.devices, *city.circuits, *city.sites})
    window = f"time >= {int(t0) * NS} AND time <= {int(t1) * NS}"
    for family in FAMILIES:
        influxql.execute(s, f'DELETE FROM "{family}" WHERE "device_id" =~ {devices} AND {window}')
    influxql.execute(s, f'DELETE FROM "anomalies" WHERE "device_id" =~ {devices} AND {window}')
    alerts = influxql.id_regex(targets)
    influxql.execute(s, f'DELETE FROM "alerts" WHERE "target" =~ {alerts} AND {window}')
    return len(targets)


class Demo:
    def __init__(self, s: Settings, run: str, out: Path) -> None:
        self.s, self.run, self.out = s, run, out
        self.group = f"citywatch-demo-{run}"
        self.alerts: Counter[tuple[str, str]] = Counter()
        # alert id -> (kind, target type, target) of every alert raised and not yet cleared
        self.open_alerts: dict[str, tuple[str, str, str]] = {}
        # InfluxQL condition for this run's own devices and window (set by ``scope``): the
        # database also holds what tests, benchmarks and earlier runs wrote.
        self.window = self.where = "false"
        self.overflow_fill = RulesConfig.load(s.processor.rules_file).bin.overflow_fill
        self.rates: dict[str, float] = {}
        # counter -> (time and value at the poll before it first grew, time of its last growth)
        self.busy: dict[str, tuple[float, float, float]] = {}
        self.kpis: dict[str, str] = {}
        self.lag = 0
        self.procs: list[subprocess.Popen[bytes]] = []
        self.gw_port, self.proc_port = (
            s.gateway.metrics_port or 9310,
            s.processor.metrics_port or 9320,
        )

    # -- processes -------------------------------------------------------------------
    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.out / f"{name}.log").open("ab")
        p = subprocess.Popen(
            [sys.executable, "-m", "citywatch", *args],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(30)

    # -- live data -------------------------------------------------------------------
    async def follow_alerts(self, start: dict[Any, int]) -> None:
        c = AIOKafkaConsumer(**client_kwargs(self.s), enable_auto_commit=False)
        await c.start()
        try:
            c.assign(list(start))
            for tp, off in start.items():
                c.seek(tp, off)
            while True:
                batch = await c.getmany(timeout_ms=500)
                for msgs in batch.values():
                    for m in msgs:
                        ev = orjson.loads(m.value)
                        if ev["state"] == "raised":
                            self.alerts[(ev["kind"], ev["severity"])] += 1
                            self.open_alerts[ev["alert_id"]] = (
                                ev["kind"],
                                ev.get("target_type", ""),
                                ev.get("target", ""),
                            )
                        elif ev["state"] == "cleared":
                            self.open_alerts.pop(ev["alert_id"], None)
        finally:
            await c.stop()

    async def poll(self) -> None:
        last: dict[str, tuple[float, float]] = {}
        admin = AIOKafkaAdminClient(**client_kwargs(self.s))
        await admin.start()
        try:
            while True:
                now = time.monotonic()
                for key, url, name in (
                    (
                        "in",
                        f"http://127.0.0.1:{self.gw_port}/metrics",
                        "citywatch_gateway_readings_forwarded",
                    ),
                    (
                        "dead",
                        f"http://127.0.0.1:{self.gw_port}/metrics",
                        "citywatch_gateway_deadlettered",
                    ),
                    (
                        "out",
                        f"http://127.0.0.1:{self.proc_port}/metrics",
                        "citywatch_processor_records",
                    ),
                ):
                    v = await asyncio.to_thread(_metric, url, name)
                    if key in last:
                        t0, v0 = last[key]
                        self.rates[key] = (v - v0) / max(now - t0, 1e-6)
                        if v > v0:
                            start = self.busy.get(key, (t0, v0, now))[:2]
                            self.busy[key] = (*start, now)
                    self.rates[f"{key}_total"] = v
                    last[key] = (now, v)
                try:
                    offs = await admin.list_consumer_group_offsets(self.group)
                    ends = await end_offsets(self.s, self.s.kafka.readings_topic)
                    self.lag = sum(
                        max(0, end - offs[tp].offset) for tp, end in ends.items() if tp in offs
                    )
                except Exception:
                    pass
                self.kpis = await asyncio.to_thread(self.compute_kpis)
                await asyncio.sleep(2.0)
        finally:
            await admin.close()

    def scope(self, devices: Iterable[str], t0: float, t1: float) -> None:
        """Limit the KPIs to these devices between t0 and t1 (epoch seconds)."""
        self.window = f"time >= {int(t0) * NS} AND time <= {int(t1) * NS}"
        self.where = f"device_id =~ {influxql.id_regex(sorted(devices))} AND {self.window}"

    def compute_kpis(self) -> dict[str, str]:
        """The bureau's figures for this run so far, from what the processor wrote.

        The lighting rate is the dashboards' (lamp readings lit while their circuit is
        switched on, dashboards/kpis.py); the rest are counts over each device's last reading
        and the open alerts.
        """
        s, where = self.s, self.where
        out: dict[str, str] = {}
        rate = _influx(s, lighting_rate_query(where, window=self.window))
        if rate and rate[0][1] is not None:
            out["lighting rate (run so far)"] = f"{rate[0][1]:.2%}"

        def last(field: str, measurement: str) -> list[float]:
            rows = _influx(
                s, f"SELECT last({field}) FROM {measurement} WHERE {where} GROUP BY device_id"
            )
            return [float(r[1]) for r in rows if r[1] is not None]

        lamps = last("power_w", "streetlight")
        if lamps:
            out["lamps lit / reporting"] = f"{sum(1 for w in lamps if w > 0):,} / {len(lamps):,}"
        bins = last("fill_ratio", "bin")
        if bins:
            full = sum(1 for f in bins if f >= self.overflow_fill)
            out[f"bins ≥ {self.overflow_fill:.0%} full"] = f"{full:,} / {len(bins):,}"
        veh = last("speed_kmh", "vehicle")
        if veh:
            out["vehicles moving"] = f"{sum(1 for v in veh if v > 3):,} / {len(veh):,}"
        dust = last("pm10_ugm3", "dust")
        open_alerts = list(self.open_alerts.values())
        if dust:
            sites = sum(1 for kind, _, _ in open_alerts if kind == "dust_exceedance")
            out["sites over the dust limit"] = f"{sites:,}"
        devices = len(lamps) + len(bins) + len(veh) + len(dust)
        if devices:
            faulty = {target for _, ttype, target in open_alerts if ttype == "device"}
            healthy = max(0, devices - len(faulty))
            out["facility integrity"] = f"{healthy / devices:.2%}"
        return out

    def view(self, phase: str, t0: float) -> Group:
        """The live view: phase and logs, pipeline flow beside the KPIs, alerts by kind.

        The flow and KPI tables stand side by side when the console is wide enough for both,
        one above the other otherwise, so nothing is cut at 80 columns.
        """
        head = Text.assemble(
            ("citywatch demo", "bold"), f" — {phase}, {time.monotonic() - t0:.0f} s\n"
        )
        head.append(f"logs: {self.out}", style="dim")
        head.overflow = "fold"
        # Once the run is over the rate now is 0: show the mean over the busy span instead.
        done = phase == "done"
        flow = Table("flow", "mean /s" if done else "per second", "total", title="pipeline")
        for key, label, fmt in (
            ("in", "in: gateway → Kafka", "{:,.0f}"),
            ("out", "out: processor → InfluxDB", "{:,.0f}"),
            ("dead", "dead-lettered", "{:,.1f}"),
        ):
            total = self.rates.get(f"{key}_total", 0.0)
            rate = self.rates.get(key, 0.0)
            if done:
                t_first, v_first, t_last = self.busy.get(key, (0.0, 0.0, 0.0))
                rate = (total - v_first) / (t_last - t_first) if t_last > t_first else 0.0
            flow.add_row(label, fmt.format(rate), f"{total:,.0f}")
        flow.add_row("Kafka consumer lag", "", f"{self.lag:,}")
        al = Table(
            "alert kind", "severity", "raised", title=f"alerts ({len(self.open_alerts)} open)"
        )
        for (kind, sev), n in sorted(self.alerts.items()):
            al.add_row(kind, sev, str(n))
        kp = Table("KPI", "now", title="KPIs")
        for k, v in self.kpis.items():
            kp.add_row(k, v)
        gap = 3
        need = sum(console.measure(t).maximum for t in (flow, kp)) + gap
        if need <= console.width:
            grid = Table.grid(padding=(0, gap))
            grid.add_row(flow, kp)
            return Group(head, grid, al)
        return Group(head, flow, kp, al)


def _ledger_readings(truth: Path) -> int:
    from ingest.simulator.ledger import Ledger, ledger_path

    try:
        return int(Ledger.load(ledger_path(truth)).readings_acked)
    except (OSError, ValueError, KeyError):
        return 0


def _print_work_orders(db: Path) -> None:
    """What the crews got: work orders per crew and status, notifications sent."""
    from notifier.store import Store

    if not db.exists():
        console.print("[yellow]no work-order database (the notifier did not start)")
        return
    store = Store(f"sqlite:///{db}")
    try:
        orders = store.list_orders(limit=100_000)
        sent = sum(1 for d in store.deliveries() if d["state"] == "sent")
    finally:
        store.close()
    console.print(f"crews: {len(orders)} work orders, {sent} notifications sent")
    table = Table(title="work orders by crew and status")
    table.add_column("crew")
    statuses = sorted({o["status"] for o in orders})
    for st in statuses:
        table.add_column(st, justify="right")
    by_crew: Counter[tuple[str, str]] = Counter((o["crew_id"], o["status"]) for o in orders)
    for crew in sorted({o["crew_id"] for o in orders}):
        table.add_row(crew, *(str(by_crew[(crew, st)]) for st in statuses))
    console.print(table)


def run_demo(
    s: Settings, *, duration: float, speed: float, seed: int, scale: int, fault_rate: float
) -> bool:
    console.rule("[bold]citywatch demo")
    stack.up(s, log=lambda m: console.print(f"  {m}"))
    run = time.strftime("%Y%m%d-%H%M%S")
    out = s.state_dir / "demo" / run
    out.mkdir(parents=True, exist_ok=True)
    model, truth = out / "city.json", out / "truth.jsonl"
    demo = Demo(s, run, out)

    async def prepare() -> tuple[dict[Any, int], dict[Any, int]]:
        readings = await end_offsets(s, s.kafka.readings_topic)
        # A fresh consumer group starting at the log end: the demo scores only its own run.
        await commit_group_at(s, demo.group, readings)
        alerts = await end_offsets(s, s.kafka.alerts_topic)
        # The notifier too takes only this run's alerts.
        await commit_group_at(s, f"{demo.group}-notifier", alerts)
        return readings, alerts

    _, alert_start = asyncio.run(prepare())
    # The processor needs the city model (circuits, schedules, corridors, limits) before the
    # first reading; the simulator regenerates the same model from the same seed.
    from citywatch.citymodel import CityModel
    from ingest.simulator.timebase import default_start
    from ingest.simulator.truth import iso

    city = CityModel.generate(seed, scale, s.city)
    city.save(model)
    # The window is fixed here, not left to the simulator, so what is cleared is what is run.
    sim_seconds = duration * speed
    start = default_start(city, time.time(), sim_seconds)
    # An hour either side: skewed device clocks stamp readings outside the simulated span.
    lo, hi = start - 3600, start + sim_seconds + 3600
    n = clear_window(s, city, lo, hi)
    demo.scope(city.devices, lo, hi)
    console.print(f"  cleared earlier demo points of {n} devices, circuits and sites")
    sim_args = [
        "--seed",
        str(seed),
        "--start",
        iso(start),
        "--scale",
        str(scale),
        "--speed",
        str(speed),
        "--duration",
        str(duration),
        "--truth",
        str(truth),
        "--city-model",
        str(model),
        "--fault-rate",
        str(fault_rate),
    ]
    common = {"CITYWATCH_STATE_DIR": str(s.state_dir)}
    demo.spawn(
        "gateway",
        ["gateway", "--instance", f"demo-{run}"],
        {
            **common,
            "CITYWATCH_GATEWAY__SESSION_EXPIRY_S": "600",
            "CITYWATCH_GATEWAY__METRICS_PORT": str(demo.gw_port),
            "CITYWATCH_GATEWAY__DEVICE_REGISTRY": str(model),
        },
    )
    demo.spawn(
        "processor",
        ["process", "--instance", f"demo-{run}", "--city-model", str(model)],
        {
            **common,
            "CITYWATCH_PROCESSOR__GROUP_ID": demo.group,
            "CITYWATCH_PROCESSOR__WARMUP_S": "0",
            "CITYWATCH_PROCESSOR__METRICS_PORT": str(demo.proc_port),
        },
    )
    orders_db = out / "workorders.db"
    demo.spawn(
        "notifier",
        ["notify", "--instance", f"demo-{run}"],
        {
            **common,
            "CITYWATCH_NOTIFIER__GROUP_ID": f"{demo.group}-notifier",
            "CITYWATCH_NOTIFIER__DB_URL": f"sqlite:///{orders_db}",
        },
    )
    time.sleep(4)
    sim = demo.spawn("simulator", ["simulate", *sim_args], common)

    async def watch() -> None:
        tasks = [
            asyncio.create_task(demo.follow_alerts(alert_start)),
            asyncio.create_task(demo.poll()),
        ]
        t0 = time.monotonic()
        with Live(demo.view("simulating", t0), console=console, refresh_per_second=2) as live:
            while sim.poll() is None:
                live.update(demo.view("simulating", t0))
                await asyncio.sleep(0.5)
            # Drain: the gateway has forwarded every reading Mosquitto acknowledged to the
            # simulator (its ledger), the processor has processed all of them, and the
            # consumer group has no lag: three polls in a row.
            acked = _ledger_readings(truth)
            quiet = 0
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and quiet < 3:
                live.update(demo.view(f"draining ({acked:,} readings acked)", t0))
                await asyncio.sleep(2.0)
                forwarded = demo.rates.get("in_total", 0)
                caught_up = forwarded >= acked and demo.rates.get("out_total", 0) >= forwarded
                quiet = quiet + 1 if caught_up and demo.lag == 0 else 0
            # Let the last alerts reach the topic.
            await asyncio.sleep(3)
            live.update(demo.view("done", t0))
        # rich's Live ends its last frame with a newline only on a terminal
        # (Textualize/rich#4192): in a log the next rule would continue the table's last line.
        if not console.is_terminal:
            console.line()
        for t in tasks:
            t.cancel()

    try:
        asyncio.run(watch())
    finally:
        demo.stop_all()
        # The run-scoped gateway never returns: drop its session now rather than let it queue
        # copies of later uplinks until its expiry (a demo or benchmark right after would pay).
        asyncio.run(end_session(s, "gateway", gateway_client_id(f"demo-{run}")))
    console.rule("scorecard and loss ledger")
    from processors.evaluate import run_evaluation

    ok = run_evaluation(
        s,
        truth=truth,
        ledger=None,
        city_model=model,
        alerts_file=None,
        use_kafka=True,
        use_influx=True,
        json_out=out / "scorecard.json",
        timeout=60.0,
        console=console,
    )
    _print_work_orders(orders_db)
    console.rule("explore")
    console.print(
        f"The stack is still running (Mosquitto 127.0.0.1:{s.mqtt.port}, Kafka "
        f"{s.kafka.bootstrap}, InfluxDB {s.influx.url}, database '{s.influx.database}').\n"
        f"  InfluxQL:  curl -G {s.influx.url}/query --data-urlencode db={s.influx.database} "
        f"-u {s.influx.admin_user}:PASSWORD (the 'influx' entry of {s.state_dir}/secrets.json) "
        '--data-urlencode "q=SELECT * FROM alerts LIMIT 10"\n'
        f"  Grafana:   dashboards in dashboards/ (see README; no Grafana server runs here)\n"
        f"  Orders:    CITYWATCH_NOTIFIER__DB_URL=sqlite:///{orders_db} "
        ".venv/bin/citywatch orders list\n"
        f"  Logs:      {out}\n"
        "  Stop it:   .venv/bin/citywatch stack down",
        # Long commands stay on one line (the terminal wraps them) so they can be copied.
        soft_wrap=True,
    )
    if ok:
        console.print(
            "[bold green]demo passed:[/] every fault kind at target, every reading Mosquitto "
            "acknowledged is in Kafka and InfluxDB"
        )
    else:
        console.print("[bold red]demo failed:[/] see the scorecard and loss ledger above")
    return ok
