"""The benchmark harness's pure parts: rates, percentiles, ratios, table, parsing, output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import harness
from bench.ceilings import line_protocol, parse_perf_test
from bench.e2e import memory_kib, sustained_rate
from bench.latency import summary

RESULTS = {
    "ceilings": {
        "mqtt_qos0": {"per_s": 12_000.0, "delivered": 1.0},
        "mqtt_qos1": {"per_s": 8_000.0},
        "kafka": {"produce_per_s": 50_000.0, "consume_per_s": 300_000.0},
        "kafka_perf_test": {"per_s": 90_000.0, "record_bytes": 300},
        "influx_write": {"per_s": 200_000.0},
    },
    "pipeline": {
        "gateway_per_s": 4_000.0,
        "raw_consume_per_s": 300_000.0,
        "processor_per_s": 9_000.0,
    },
    "e2e": {
        "devices": 10_000,
        "e2e_per_s": 3_600.0,
        "e2e_span_s": 61.0,
        "loss": {"acked": 220_000, "missing": 0},
        "series": [
            {"t": 0.0, "gateway": 0, "processor": 0},
            {"t": 1.0, "gateway": 3000, "processor": 2000},
            {"t": 2.0, "gateway": 6500, "processor": 5800},
        ],
    },
    "latency": {
        "offered_per_s": 1_800.0,
        "influx": {"n": 100, "p50_ms": 250.0, "p95_ms": 400.0, "p99_ms": 600.0},
        "alert": {"n": 100, "p50_ms": 200.0, "p95_ms": 350.0, "p99_ms": 450.0},
    },
    "memory": {
        "gateway": {"per_10k_devices_mib": 30.0, "idle_rss_mib": 80, "peak_rss_mib": 110},
        "processor": {"per_10k_devices_mib": 60.0, "idle_rss_mib": 110, "peak_rss_mib": 170},
        "detector_bytes_per_device_metric": 1_500.0,
        "rule_bytes_per_device": 2_300.0,
    },
    "scaling": {
        "gateways_1": {"per_s": 4_000.0},
        "gateways_2": {"per_s": 5_000.0},
        "gateways_speedup": 1.25,
        "processors_1": {"per_s": 9_000.0},
        "processors_2": {"per_s": 10_800.0},
        "processors_speedup": 1.2,
    },
    "detectors": {"passthrough": {"points_per_s": 1e7, "vs_passthrough": 1.0}},
    "errors": {},
}


def test_sustained_rate_counts_from_the_sample_before_growth_to_the_last_growth() -> None:
    series = [(0.0, 0.0), (1.0, 0.0), (2.0, 100.0), (3.0, 300.0), (4.0, 500.0), (9.0, 500.0)]
    rate, span = sustained_rate(series)
    assert span == 3.0
    assert rate == pytest.approx(500 / 3)


def test_sustained_rate_of_a_single_jump_and_of_nothing() -> None:
    assert sustained_rate([(0.0, 0.0), (0.5, 5000.0)]) == (10_000.0, 0.5)
    assert sustained_rate([(0.0, 7.0), (1.0, 7.0)]) == (0.0, 0.0)
    assert sustained_rate([]) == (0.0, 0.0)


def test_latency_summary_nearest_rank_percentiles_in_ms() -> None:
    lat = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    out = summary(lat)
    assert out == {"n": 100, "p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0, "max_ms": 100.0}


def test_latency_summary_of_nothing_is_none_not_zero() -> None:
    assert summary([]) == {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}


def test_ratios_pick_the_slowest_ceiling_on_the_readings_path() -> None:
    q = harness.ratios(RESULTS)
    # QoS 0 (12,000/s) is not on the pipeline's path: QoS 1 is the slowest ceiling.
    assert q["slowest_ceiling"] == "MQTT QoS 1"
    assert q["e2e_vs_slowest_ceiling"] == pytest.approx(0.45)
    assert q["gateway_vs_mqtt_qos1"] == pytest.approx(0.5)
    assert q["processor_vs_raw_consume"] == pytest.approx(0.03)


def test_the_processor_floor_is_a_row_beside_the_processor_only_when_measured() -> None:
    with_floor = {"pipeline": {**RESULTS["pipeline"], "processor_floor_per_s": 60_000.0}}
    assert harness.ratios(with_floor)["processor_floor_vs_raw_consume"] == pytest.approx(0.2)
    rows = harness.table_rows(with_floor)
    names = [r[0] for r in rows]
    floor = names.index("  same process, every rule off, pass-through detector")
    assert names[floor - 1] == "processor (1 process) → InfluxDB"
    assert rows[floor][1] == "60,000 readings/s" and "0.200 × raw consume" in rows[floor][2]
    # Results written before the floor existed still render, without the row.
    assert not any("every rule off" in n for n in (r[0] for r in harness.table_rows(RESULTS)))
    assert harness.ratios(RESULTS)["processor_floor_vs_raw_consume"] is None


def test_the_bare_pipeline_row_bounds_the_processor_only_when_measured() -> None:
    r = {"pipeline": {**RESULTS["pipeline"], "bare_pipeline_per_s": 120_000.0}}
    q = harness.ratios(r)
    raw, proc = RESULTS["pipeline"]["raw_consume_per_s"], RESULTS["pipeline"]["processor_per_s"]
    assert q["bare_pipeline_vs_raw_consume"] == pytest.approx(120_000 / raw)
    assert q["processor_vs_bare_pipeline"] == pytest.approx(proc / 120_000)
    (row,) = [x for x in harness.table_rows(r) if x[0].startswith("  bare consumer")]
    assert row[1] == "120,000 readings/s"
    assert f"{120_000 / raw:.3f} × raw consume" in row[2]
    assert f"processor {proc / 120_000:.2f} × this" in row[2]
    assert not any("bare consumer" in x[0] for x in harness.table_rows(RESULTS))
    assert harness.ratios(RESULTS)["processor_vs_bare_pipeline"] is None


def test_ratios_survive_missing_phases() -> None:
    q = harness.ratios({"e2e": {"e2e_per_s": 10.0}})
    assert q["slowest_ceiling"] is None
    assert q["e2e_vs_slowest_ceiling"] is None


def test_table_has_one_row_per_figure_and_markdown_renders_it() -> None:
    rows = harness.table_rows(RESULTS)
    text = harness.markdown(rows)
    assert text.splitlines()[0] == "| benchmark | measured | ratio / target |"
    assert len(text.splitlines()) == len(rows) + 2
    e2e = next(r for r in rows if r[0].startswith("end to end"))
    assert e2e[1] == "3,600 readings/s"
    assert "0.450 ×" in e2e[2] and "MQTT QoS 1" in e2e[2]
    alert = next(r for r in rows if "alert on" in r[0])
    assert alert[1] == "p50 200 ms · p95 350 ms · p99 450 ms"
    assert any(r[0] == "  sustained for / loss ledger" and "0 missing" in r[2] for r in rows)


def test_table_reports_failed_phases_and_skips_absent_ones() -> None:
    rows = harness.table_rows({"errors": {"latency": "Traceback\nRuntimeError: broker gone"}})
    assert rows == [("latency: FAILED", "RuntimeError: broker gone", "")]


def test_parse_perf_test_takes_the_summary_line() -> None:
    text = (
        "49000 records sent, 9800.0 records/sec (2.80 MB/sec), 20.1 ms avg latency.\n"
        "200000 records sent, 61349.693252 records/sec (17.55 MB/sec), 101.22 ms avg latency,"
        " 400.00 ms max latency, 80 ms 50th, 300 ms 95th, 350 ms 99th, 390 ms 99.9th.\n"
    )
    assert parse_perf_test(text) == {"records": 200000.0, "per_s": 61349.693252, "mb_per_s": 17.55}
    with pytest.raises(ValueError, match="no ProducerPerformance summary"):
        parse_perf_test("Exception in thread main")


def test_line_protocol_points_are_distinct_series_times() -> None:
    lines = line_protocol(20_001, devices=10_000, t0_ns=10**18)
    assert len(set(lines)) == 20_001
    assert lines[10_000].startswith(b"bench,device_id=dev-0,")
    assert lines[10_000].endswith(b" %d" % (10**18 + 10_000 * 1000))


def test_memory_of_this_process_and_of_a_gone_one() -> None:
    mem = memory_kib(os.getpid())
    assert mem["VmRSS"] > 1000 and mem["VmHWM"] >= mem["VmRSS"]
    assert memory_kib(2**22 + 12345) == {}


def test_plot_and_json_written_from_results(tmp_path: Path) -> None:
    png = tmp_path / "r.png"
    harness.plot(RESULTS, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    harness.plot({"errors": {}}, tmp_path / "empty.png")  # nothing measured: still a plot
    assert (tmp_path / "empty.png").stat().st_size > 0
    assert json.loads(json.dumps(harness.ratios(RESULTS)))["slowest_ceiling"] == "MQTT QoS 1"


def test_offered_load_is_above_the_slower_stage_and_half_load_halves_e2e() -> None:
    assert harness._offered(RESULTS, harness.SIZES["full"]) == pytest.approx(4_800.0)
    assert harness._half_load(RESULTS) == pytest.approx(1_800.0)
    assert harness._half_load({}) == pytest.approx(1_000.0)


def test_unknown_phase_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        harness.main(["--only", "ceilings,warp"])
    assert "unknown phases: ['warp']" in capsys.readouterr().err


def test_sustained_rate_ignores_a_trickle_of_other_traffic() -> None:
    # 3 readings/s of someone else's devices before and after a 1,000/s run.
    series = [(float(t), 3.0 * t) for t in range(6)]
    series += [(5.0 + t, 15.0 + 1000.0 * t) for t in range(1, 11)]
    series += [(15.0 + t, series[-1][1] + 3.0 * t) for t in range(1, 5)]
    rate, span = sustained_rate(series)
    assert span == 10.0
    assert rate == pytest.approx(1000.0, rel=0.01)


def test_failed_phase_shows_the_exception_line_even_with_a_multiline_message() -> None:
    err = (
        'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
        "RuntimeError: latency publisher failed: MqttError: connection lost\n\n   \n"
    )
    assert harness._last_line(err) == (
        "RuntimeError: latency publisher failed: MqttError: connection lost"
    )


def _attempt(offer: float, through: float, dropped: float = 0.0, missing: int = 0) -> dict:
    return {
        "offered_per_s": offer,
        "offered_actual_per_s": offer,
        "e2e_per_s": through,
        "broker_dropped": dropped,
        "loss": {"acked": 1000, "missing": missing},
        "cpu": {"us_per_reading": {"gateway": 50.0, "total": 150.0}, "cores": {"total": 1.5}},
    }


def test_an_overloaded_e2e_attempt_is_repeated_near_what_got_through(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bench import e2e

    script = [_attempt(40_000, 7_000, dropped=5), _attempt(8_400, 8_000, missing=3)]
    script.append(_attempt(6_720, 6_700))
    offers: list[float] = []

    def fake(s: object, **kw: float) -> dict:
        offers.append(kw["rate"])
        return script[len(offers) - 1]

    monkeypatch.setattr(e2e, "_run_once", fake)
    out = e2e.run(None, devices=10, rate=40_000, duration=1, workdir=tmp_path)  # type: ignore[arg-type]
    # 1.2 x what got through (below 0.9 x the 40,000/s offered), then 0.8 x that.
    assert offers == pytest.approx([40_000, 8_400, 6_720])
    assert out["e2e_per_s"] == 6_700
    assert [a["e2e_per_s"] for a in out["attempts"]] == [7_000, 8_000, 6_700]
    rows = harness.table_rows({**RESULTS, "e2e": {**RESULTS["e2e"], **out}})
    labels = [r[0] for r in rows]
    assert "  attempt 1 (overloaded)" in labels and "  attempt 2 (overloaded)" in labels
    cpu = next(r for r in rows if r[0].startswith("  CPU per reading"))
    assert cpu[1].startswith("150 µs in all") and "gateway 50" in cpu[2]


def test_the_retry_offer_stays_below_what_the_simulator_managed() -> None:
    from bench.e2e import next_offer

    assert next_offer(_attempt(10_000, 9_500)) == pytest.approx(9_000)
    assert next_offer(_attempt(40_000, 7_000)) == pytest.approx(8_400)


def test_a_clean_first_e2e_attempt_is_the_result(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bench import e2e

    monkeypatch.setattr(e2e, "_run_once", lambda s, **kw: _attempt(kw["rate"], 5_000))
    out = e2e.run(None, devices=10, rate=6_000, duration=1, workdir=tmp_path)  # type: ignore[arg-type]
    assert len(out["attempts"]) == 1 and "overloaded" not in out


def test_the_gateway_bench_waits_for_a_log_line_and_reports_a_process_that_exits_first(
    tmp_path: Path,
) -> None:
    # bench.gateway starts its gateway as a chaos Worker: output to a file, wait for a line.
    from citywatch.chaos import Worker

    up = Worker("cli", ["--help"], {}, tmp_path / "up.log")
    up.start()
    up.wait_log("Usage", 60)  # returns only once the line is there
    assert "Usage" in (tmp_path / "up.log").read_text()
    up.stop()
    down = Worker("cli", ["no-such-command"], {}, tmp_path / "down.log")
    down.start()
    with pytest.raises(RuntimeError, match=r"(?s)cli exited.*No such command"):
        down.wait_log("up (mode", 60)


def test_latency_stages_name_the_slowest_probes_of_each_stage() -> None:
    from bench.latency import stages

    s = 1_000_000_000
    # (device ts ns, appended to readings at ms) and (_, alert sent at ms), per probe
    readings = {f"binp{i}": (i * s, i * 1000 + 10 * i) for i in range(1, 8)}
    alerts = {f"binp{i}": (0, i * 1000 + 10 * i + (900 if i == 2 else 100)) for i in range(1, 8)}
    st = stages(readings, alerts)
    assert st["slowest_to_kafka"] == ["7", "6", "5", "4", "3"]  # 70 ms, 60 ms, ...
    assert st["slowest_in_processor"][0] == "2"  # its alert took 900 ms, the others 100
    assert st["processor"]["max_ms"] == 900.0


def test_decode_timeit_times_every_simulator_format() -> None:
    from bench.decode_timeit import FORMATS, measure

    got = measure(rounds=1)
    formats = {f for fs in FORMATS.values() for f in fs}
    assert formats == {"json_native", "senml", "lamp_binary", "ttn_v3", "chirpstack_v4"}
    assert all(got[f] > 0 for f in formats)
    assert min(got[f] for f in formats) <= got["all"] <= max(got[f] for f in formats)
