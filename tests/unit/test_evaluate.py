"""Evaluation: matching and scoring on hand-made truth and alerts, the loss ledger, output."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from ingest.simulator.ledger import Ledger, RangeSet
from ingest.simulator.truth import iso, write_truth
from processors.evaluate import (
    NS,
    AlertRec,
    TruthFault,
    alerts_from_events,
    compare,
    faults_from_truth,
    percentile,
    render,
    run_evaluation,
    score,
)
from processors.evaluate.collect import _influx_chunk

T0 = 1_700_000_000.0
END = T0 + 16 * 3600


def fault(
    fid: str, kind: str, target: str, family: str, start: float, end: float | None
) -> TruthFault:
    return TruthFault(fid, kind, target, family, T0 + start, None if end is None else T0 + end)


def alert(
    aid: str, kind: str, target: str, episode: float, raised: float | None = None
) -> AlertRec:
    return AlertRec(aid, kind, target, T0 + episode, T0 + (episode if raised is None else raised))


def test_recall_precision_and_delays_per_kind() -> None:
    faults = [
        fault("f1", "lamp_out", "lamp-1", "streetlight", 1000, 3000),
        fault("f2", "lamp_out", "lamp-2", "streetlight", 5000, 7000),
        fault("f3", "lamp_out", "lamp-3", "streetlight", 9000, 9900),
        fault("f4", "bin_fire", "bin-1", "bin", 100, 2000),
    ]
    alerts = [
        alert("a1", "lamp_out", "lamp-1", 1300, 1600),  # delay 600 s = 2 intervals
        alert("a2", "lamp_out", "lamp-2", 5000, 5900),  # delay 900 s = 3 intervals
        alert("a3", "lamp_out", "lamp-9", 5000),  # wrong lamp: false positive
        alert("a4", "bin_fire", "bin-1", 100, 100),
        alert("a5", "bin_fire", "bin-1", 1500, 1500),  # a second episode of the same fire
    ]
    card = score(faults, alerts, sim_start=T0, sim_end=END)
    lo = card.kinds["lamp_out"]
    assert (lo.faults, lo.detected, lo.alerts, lo.matched_alerts) == (3, 2, 3, 2)
    assert lo.recall == pytest.approx(2 / 3) and lo.precision == pytest.approx(2 / 3)
    assert lo.median_delay_s == 600.0 and lo.p95_delay_s == 900.0
    assert lo.median_delay_iv == 2.0 and lo.p95_delay_iv == 3.0
    assert lo.missed == ["f3"] and lo.false_alerts == ["a3"] and not lo.ok
    bf = card.kinds["bin_fire"]
    assert (bf.recall, bf.precision, bf.delays_s) == (1.0, 1.0, [0.0])
    assert bf.ok and not card.ok


def test_match_window_edges() -> None:
    """[start - 1 interval, end + allowance]: 300 s before; after, lamp_out's 900 s raised
    to the 4-interval floor (1200 s)."""
    f = [fault("f1", "lamp_out", "lamp-1", "streetlight", 1000, 2000)]
    inside = [alert("a", "lamp_out", "lamp-1", 700), alert("b", "lamp_out", "lamp-1", 3200)]
    outside = [alert("c", "lamp_out", "lamp-1", 699), alert("d", "lamp_out", "lamp-1", 3201)]
    card = score(f, inside + outside, sim_start=T0, sim_end=END)
    ks = card.kinds["lamp_out"]
    assert ks.matched_alerts == 2 and sorted(ks.false_alerts) == ["c", "d"]
    # An early alert's "delay" is negative: it started before the fault did.
    assert ks.delays_s == [-300.0]


def test_open_fault_runs_to_the_end_of_the_simulation() -> None:
    f = [fault("f1", "device_silence", "bin-1", "bin", 1000, None)]
    a = [alert("a", "device_silence", "bin-1", 16 * 3600 + 3000, 16 * 3600 + 3000)]
    card = score(f, a, sim_start=T0, sim_end=END)
    # allowance for silence is 4 intervals (3600 s for bins) past the end of the run
    assert card.kinds["device_silence"].recall == 1.0


def test_device_silence_delays_use_each_familys_interval() -> None:
    faults = [
        fault("f1", "device_silence", "veh-1", "vehicle", 1000, 1300),
        fault("f2", "device_silence", "bin-1", "bin", 1000, 9000),
    ]
    alerts = [
        alert("a1", "device_silence", "veh-1", 1020, 1030),
        alert("a2", "device_silence", "bin-1", 2800, 2800),
    ]
    ks = score(faults, alerts, sim_start=T0, sim_end=END).kinds["device_silence"]
    assert sorted(ks.delays_s) == [30.0, 1800.0]
    assert sorted(ks.delays_iv) == [2.0, 3.0]


def test_other_kinds_and_foreign_alerts_are_set_aside() -> None:
    alerts = [
        alert("a1", "overspeed", "veh-1", 100),
        alert("a2", "lamp_out", "lamp-1", -2 * 3600),  # another run, hours before
        alert("a3", "lamp_out", "lamp-1", 100),
    ]
    card = score([], alerts, sim_start=T0, sim_end=END)
    assert card.other_alerts == Counter({"overspeed": 1})
    assert card.ignored_alerts == 1
    lo = card.kinds["lamp_out"]
    assert (lo.faults, lo.alerts, lo.precision, lo.recall) == (0, 1, 0.0, None)
    assert not lo.ok  # alerts for a kind with no fault at all are all false


def test_alert_events_count_once_by_their_raised_event() -> None:
    ev: list[dict[str, Any]] = [
        {"alert_id": "x", "kind": "bin_fire", "target": "bin-1", "state": "raised",
         "episode_start": 10 * NS, "ts": 12 * NS},
        {"alert_id": "x", "kind": "bin_fire", "target": "bin-1", "state": "updated",
         "episode_start": 10 * NS, "ts": 20 * NS},
        {"alert_id": "x", "kind": "bin_fire", "target": "bin-1", "state": "raised",
         "episode_start": 10 * NS, "ts": 30 * NS},  # a replay
        {"alert_id": "y", "kind": "bin_fire", "target": "bin-2", "state": "cleared",
         "episode_start": 10 * NS, "ts": 40 * NS},
    ]  # fmt: skip
    [a] = alerts_from_events(ev)
    assert (a.alert_id, a.episode_start, a.raised_at) == ("x", 10.0, 12.0)


def test_faults_from_truth_skips_transport_entries() -> None:
    entries = [
        {"fault_id": "f1", "kind": "bin_fire", "target": "bin-1", "target_type": "device",
         "family": "bin", "district": "central", "start": iso(T0), "end": None},
        {"fault_id": "f2", "kind": "duplicate", "target": "bin-1", "target_type": "device",
         "family": "bin", "district": "central", "start": iso(T0), "end": iso(T0 + 3)},
    ]  # fmt: skip
    [f] = faults_from_truth(entries)
    assert (f.fault_id, f.start, f.end) == ("f1", T0, None)


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.95) == 5.0
    values = [float(x) for x in range(1, 21)]
    assert percentile(values, 0.5) == 10.0 and percentile(values, 0.95) == 19.0


def ranges(**devices: list[int]) -> dict[str, RangeSet]:
    out = {}
    for dev, seqs in devices.items():
        r = RangeSet()
        for s in seqs:
            r.add(s)
        out[dev.replace("_", "-")] = r
    return out


def test_compare_lists_missing_and_extra() -> None:
    acked = ranges(bin_1=list(range(1, 101)), bin_2=[1, 2, 3])
    found = ranges(bin_1=[*range(1, 50), *range(52, 102)], bin_3=[7])
    st = compare("kafka", acked, found)
    assert (st.present, st.missing, st.extra) == (98, 5, 1)  # bin-1#101; bin-3 is not ours
    assert st.first_missing == ["bin-1#50", "bin-1#51", "bin-2#1", "bin-2#2", "bin-2#3"]


def test_compare_lists_at_most_20_missing() -> None:
    st = compare("influxdb", ranges(bin_1=list(range(100))), {})
    assert st.missing == 100 and len(st.first_missing) == 20


def test_influx_chunk_parsing_filters_older_runs() -> None:
    chunk = {"results": [{"series": [{"name": "bin", "columns": ["time", "seq", "device_id",
              "received_at"], "values": [[1, 5, "bin-1", 100], [2, 6, "bin-1", 50],
              [3, 7, "bin-1", None]]}]}]}  # fmt: skip
    found: dict[str, RangeSet] = {}
    _influx_chunk(chunk, 60, found)
    assert found["bin-1"].ranges == [[5, 5], [7, 7]]
    with pytest.raises(RuntimeError):
        _influx_chunk({"results": [{"error": "boom"}]}, 0, found)


def test_render_shows_every_section() -> None:
    console = Console(record=True, width=200)
    card = score(
        [fault("f1", "bin_fire", "bin-1", "bin", 0, 100)],
        [alert("a", "bin_fire", "bin-1", 10)],
        sim_start=T0,
        sim_end=END,
    )
    led = Ledger({"sim_start": iso(T0), "sim_end": iso(END)})
    led.ack((("bin-1", 1), ("bin-1", 2)))
    led.malformed_by_reason["crc"] = 2
    render(console, card, led, [compare("kafka", led.acked, {})], Counter({"crc": 2}), True)
    text = console.export_text()
    for needle in ("bin_fire", "100.0%", "kafka", "bin-1#1", "crc"):
        assert needle in text


def test_run_evaluation_offline_from_files(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    write_truth(
        truth,
        [{"fault_id": "f000001", "kind": "bin_fire", "target": "bin-1", "target_type": "device",
          "family": "bin", "district": "central", "start": iso(T0 + 100), "end": iso(T0 + 900)}],
    )  # fmt: skip
    led = Ledger({"sim_start": iso(T0), "sim_end": iso(END), "wall_start": T0})
    led.ack((("bin-1", 1),))
    led.save(tmp_path / "truth.ledger.json")
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_bytes(
        orjson.dumps({"alert_id": "a", "kind": "bin_fire", "target": "bin-1", "state": "raised",
                      "episode_start": int((T0 + 100) * NS), "ts": int((T0 + 130) * NS)}) + b"\n"
    )  # fmt: skip
    out = tmp_path / "card.json"
    console = Console(record=True, width=200)
    ok = run_evaluation(
        None, truth=truth, ledger=None, city_model=None, alerts_file=alerts, use_kafka=False,
        use_influx=False, json_out=out, timeout=1.0, console=console,
    )  # fmt: skip
    assert ok
    card = orjson.loads(out.read_bytes())
    [k] = card["kinds"]
    assert (k["kind"], k["recall"], k["precision"], k["median_delay_s"]) == (
        "bin_fire",
        1.0,
        1.0,
        30.0,
    )
    assert card["ledger"]["acked"] == 1
