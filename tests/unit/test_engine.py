"""Engine: every reading becomes a line; silence raises and clears by event time."""

from __future__ import annotations

from processors.config import RulesConfig
from processors.detectors.registry import DEFAULT_DETECTOR, create
from processors.engine import Engine

S = 1_000_000_000


def reading(dev: str, family: str, t: float, **fields: object) -> dict[str, object]:
    """A canonical record as the gateway writes it, at event time ``t`` seconds."""
    envelope = {"device_id": dev, "family": family, "district": "n", "ts": int(t * S)}
    return {**envelope, "received_at": int(t * S), "late": False, "seq": int(t), **fields}


def rec(dev: str, t: float, fill: float = 0.3) -> dict[str, object]:
    return reading(dev, "bin", t, fill_ratio=fill)


def test_each_reading_becomes_one_line() -> None:
    out = Engine(RulesConfig()).process([rec("bin-1", 0), rec("bin-2", 0)])
    assert sum(line.startswith("bin,") for line in out.lines) == 2


def test_silence_raises_then_clears_on_event_time() -> None:
    eng = Engine(RulesConfig())
    eng.process([rec("bin-1", 0), rec("bin-2", 0)])
    # bin-2 keeps reporting; bin-1 falls silent for > 3 x 900 s of event time.
    out = eng.process([rec("bin-2", t) for t in range(900, 3700, 900)])
    raised = [e for e in out.events if e.kind == "device_silence" and e.state == "raised"]
    assert [e.target for e in raised] == ["bin-1"]
    assert any(line.startswith("alerts,") for line in out.lines)
    out = eng.process([rec("bin-1", 3700), rec("bin-1", 3700 + 700)])
    assert [e.state for e in out.events if e.target == "bin-1"] == ["cleared"]


def test_kpi_points_of_summarising_rules_become_lines() -> None:
    from processors.rules.base import Condition, Record, Rule

    class Summary(Rule):
        name = "summary"

        def on_reading(self, rec: Record, out: list[Condition]) -> None:
            return None

        def kpi_points(self, now_ns: int) -> list[dict[str, object]]:
            return [
                {
                    "measurement": "trips",
                    "tags": {"vehicle": "v 1"},
                    "fields": {"km": 12.5},
                    "ts": now_ns,
                }
            ]

    eng = Engine(RulesConfig())
    eng.rules.append(Summary())
    out = eng.process([rec("bin-1", 5)])
    assert f"trips,vehicle=v\\ 1 km=12.5 {5 * S}" in out.kpi_lines
    assert not any(line.startswith("trips") for line in out.lines)


def test_silence_scan_is_throttled_but_keeps_alert_time() -> None:
    from processors.rules.common.device_silence import DeviceSilence

    s = 10**9
    rule = DeviceSilence({"vehicle": 10.0, "bin": 900.0}, k=3.0)  # limits 30 s and 2700 s
    assert rule.scan_every_ns == 3 * s
    out: list = []
    for i in range(1000):
        rule.on_reading({"device_id": f"v{i}", "family": "vehicle", "district": "n", "ts": 0}, out)
    # A first reading says the device is not silent: a silence left open before ends.
    assert len(out) == 1000 and not any(c.active for c in out)
    out.clear()
    rule.on_tick(29 * s, out)  # a scan: nobody silent yet
    rule.on_tick(31 * s, out)  # within 3 s of the last scan: skipped
    assert out == []
    rule.on_tick(32 * s, out)  # the next scan finds all of them
    assert len(out) == 1000
    # Stamped at last reading + limit, whenever the scan ran: the same alert id on replay.
    assert {c.ts for c in out} == {30 * s}


def test_detector_scores_at_or_above_store_above_become_anomaly_lines() -> None:
    eng = Engine(RulesConfig())
    # A tag value with a space and a comma: the anomaly line escapes it like a reading line.
    dev = "bin 1,a"
    calm = [rec(dev, 600 * i, 0.3 + 0.01 * (i * 7 % 5)) for i in range(300)]
    out = eng.process(calm)
    before = [line for line in out.lines if line.startswith("anomalies,")]
    spike = eng.process([rec(dev, 600 * 300, 0.95)])
    lines = [line for line in spike.lines if line.startswith("anomalies,")]
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "anomalies,device_id=bin\\ 1\\,a,district=n,family=bin,metric=fill_ratio score="
    )
    assert lines[0].endswith(f",value=0.95 {600 * 300 * S}")
    # A repeating 5-step series ties its record every few points (score 0.5): those ties are
    # not stored (store_above 0.51); only the first scored points, against a record learnt
    # from very few points, may be.
    assert len(before) <= 2, before


def lamp(t: float, power_w: float, dimming_pct: float) -> dict[str, object]:
    state = "on" if dimming_pct >= 100 else "dim"
    return reading(
        "lamp-1", "streetlight", t, power_w=power_w, dimming_pct=dimming_pct, power_state=state
    )


def _lamp_night(step_w: float, step_pct: float) -> tuple[list[str], list[float]]:
    """A lamp's first night, 5-minute readings: 150 at full output, then 20 after a step."""
    t0 = 1_764_950_400  # 2025-12-05T16:00Z, midnight in the default city (Asia/Shanghai)
    wobble = [0.4 * (i * 7 % 5 - 2) for i in range(170)]
    watts = [118.0 + wobble[i] for i in range(150)]
    watts += [step_w + wobble[i] for i in range(150, 170)]
    levels = [100.0] * 150 + [step_pct] * 20
    recs = [
        lamp(t0 + 300 * i, w, lvl) for i, (w, lvl) in enumerate(zip(watts, levels, strict=True))
    ]
    out = Engine(RulesConfig()).process(recs)
    raw = create(DEFAULT_DETECTOR)
    raw_scores = [raw.update(t0 + 300.0 * i, w) for i, w in enumerate(watts)]
    return [line for line in out.lines if line.startswith("anomalies,")], raw_scores


def test_lamp_power_is_scored_at_full_output_so_a_dimming_step_is_not_an_anomaly() -> None:
    anomalies, raw_scores = _lamp_night(step_w=59.0, step_pct=50.0)
    assert max(raw_scores[150:]) >= 0.51  # scored as reported, the step is a new extreme
    assert anomalies == []


def test_lamp_power_drop_at_the_same_level_is_still_an_anomaly() -> None:
    anomalies, _ = _lamp_night(step_w=80.0, step_pct=100.0)  # -32 % at full output
    assert len(anomalies) == 1
    assert "metric=power_w" in anomalies[0] and ",value=79.2 " in anomalies[0]  # as reported


def test_forgotten_devices_are_not_judged_silent_and_lose_their_state() -> None:
    from processors.alerts import Episode

    eng = Engine(RulesConfig())
    eng.process(
        [
            reading(f"dust-{i}", "dust", t, pm10_ugm3=40.0)
            for t in range(0, 600, 60)
            for i in range(4)
        ]
    )
    eng.alerts.open[("stuck_sensor", "dust-1")] = Episode("x", 0, "warning", 0)
    assert ("dust-1", "pm10_ugm3") in eng.detectors
    # dust-0 and dust-1 went to another processor; dust-2 and dust-3 go on reporting here.
    eng.forget({"dust-0", "dust-1"})
    assert not any(k[0] in ("dust-0", "dust-1") for k in eng.detectors)
    assert ("dust-2", "pm10_ugm3") in eng.detectors
    assert ("stuck_sensor", "dust-1") not in eng.alerts.open
    out = eng.process(
        [
            reading(f"dust-{i}", "dust", t, pm10_ugm3=41.0)
            for t in range(600, 7200, 60)
            for i in (2, 3)
        ]
    )
    silent = {e.target for e in out.events if e.kind == "device_silence"}
    assert silent == set()


def test_forgotten_devices_take_their_sites_episodes_along() -> None:
    from processors.alerts import Episode
    from processors.rules.dust.dust_exceedance import DustExceedance

    eng = Engine(RulesConfig())
    site = [
        reading(f"dust-{i}", "dust", t, pm10_ugm3=40.0, site_id="s1")
        for i in range(2)
        for t in range(0, 600, 60)
    ]
    other = [reading("dust-9", "dust", t, pm10_ugm3=40.0, site_id="s9") for t in range(0, 600, 60)]
    eng.process(site + other)
    for target in ("s1", "s9"):
        eng.alerts.open[("dust_exceedance", target)] = Episode(target, 0, "major", 0)
    eng.forget({"dust-0", "dust-1"})
    assert {t for k, t in eng.alerts.open if k == "dust_exceedance"} == {"s9"}
    dust = next(r for r in eng.rules if isinstance(r, DustExceedance))
    assert set(dust.sites) == {"s9"}


def test_adopting_replaces_an_episode_another_processor_superseded() -> None:
    from processors.alerts import AlertManager, Episode

    am = AlertManager()
    am.open[("bin_overflow", "bin-1")] = Episode("old", 0, "warning", 0)
    am.open[("bin_fire", "bin-1")] = Episode("same", 0, "critical", 0)
    am.adopt(
        {
            ("bin_overflow", "bin-1"): Episode("newer", 10, "warning", 10),
            ("bin_fire", "bin-1"): Episode("same", 0, "critical", 5),
        }
    )
    assert set(am.open) == {("bin_fire", "bin-1")}
    assert am.adopted[("bin_overflow", "bin-1")].alert_id == "newer"
