"""The message stream: deterministic per seed, decodable, paced by simulated time."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest

from citywatch.citymodel import CityModel
from ingest.decode import decode_message
from ingest.simulator.config import SimConfig
from ingest.simulator.engine import Simulation, generate
from ingest.simulator.formats import Message
from ingest.simulator.timebase import Pacer
from ingest.simulator.truth import CONTRACT_KINDS, parse_iso

# 16:00 local: the two hours cross dusk (about 16:55 in late November).
START = datetime(2024, 11, 20, 16, tzinfo=timezone(timedelta(hours=8))).timestamp()


def stream(seed: int, hours: float = 2.0, **kw: object) -> list[Message]:
    cfg = SimConfig(seed=seed, start=START, sim_seconds=hours * 3600, **kw)  # type: ignore[arg-type]
    return list(generate(cfg))


@pytest.fixture(scope="module")
def two_hours() -> tuple[Simulation, list[Message]]:
    sim = Simulation(SimConfig(seed=3, start=START, sim_seconds=2 * 3600))
    return sim, list(sim.messages())


def test_same_seed_same_readings_and_faults(two_hours: tuple[Simulation, list[Message]]) -> None:
    sim, msgs = two_hours
    again = Simulation(SimConfig(seed=3, start=START, sim_seconds=2 * 3600))
    msgs2 = list(again.messages())
    assert [(m.t, m.topic, m.payload) for m in msgs] == [(m.t, m.topic, m.payload) for m in msgs2]
    assert sim.truth() == again.truth()


def test_other_seed_other_stream(two_hours: tuple[Simulation, list[Message]]) -> None:
    other = stream(4, hours=0.25)
    mine = two_hours[1][: len(other)]
    assert [m.payload for m in other] != [m.payload for m in mine]


def test_a_shorter_run_is_a_prefix_of_a_longer_one() -> None:
    short = stream(5, hours=0.25, transport_rate=0.0, fault_rate=0.0, clock_skew_rate=0.0)
    long = stream(5, hours=0.5, transport_rate=0.0, fault_rate=0.0, clock_skew_rate=0.0)
    assert [m.payload for m in long[: len(short)]] == [m.payload for m in short]


def test_every_reading_decodes_and_every_family_reports(
    two_hours: tuple[Simulation, list[Message]],
) -> None:
    sim, msgs = two_hours
    received = datetime.fromtimestamp(sim.t1 + 3600, UTC)
    decoders: Counter[str] = Counter()
    families: Counter[str] = Counter()
    for m in msgs:
        if m.kind != "reading":
            continue
        res = decode_message(m.topic, m.payload, received)
        assert res.rejects == []
        assert [(r.device_id, r.seq) for r in res.readings] == list(m.readings)
        decoders[res.decoder or ""] += 1
        for r in res.readings:
            families[r.family] += 1
            assert sim.t0 <= r.ts.timestamp() <= sim.t1 + 300
    assert set(decoders) == {"json_native", "senml", "ttn_v3", "chirpstack_v4", "lamp_binary"}
    assert set(families) == {"streetlight", "bin", "vehicle", "dust"}
    # Roughly one reading per device per interval, more for lamps (switching at dusk).
    city = sim.city
    assert families["vehicle"] == pytest.approx(
        len(city.devices_in("central", "vehicle")) * 720, rel=0.05
    )
    assert families["dust"] == pytest.approx(len(city.devices_in("central", "dust")) * 120, rel=0.1)


def test_lamps_switch_on_at_dusk(two_hours: tuple[Simulation, list[Message]]) -> None:
    sim, msgs = two_hours
    city = sim.city
    sunset = city.sun_times(city.local_day(START))[1]
    received = datetime.fromtimestamp(sim.t1 + 3600, UTC)
    faulty = {e["target"] for e in sim.truth()}
    states: dict[str, list[tuple[float, str]]] = {}
    for m in msgs:
        if m.kind == "reading" and m.family == "streetlight":
            for r in decode_message(m.topic, m.payload, received).readings:
                states.setdefault(r.device_id, []).append((r.ts.timestamp(), r.power_state or ""))
    for lamp, seen in states.items():
        if lamp in faulty or city.circuit_of(lamp).id in faulty:  # type: ignore[union-attr]
            continue
        for ts, state in seen:
            if ts < sunset - 1:
                assert state == "off", (lamp, ts)
            elif ts > sunset + 1:
                assert state == "on", (lamp, ts)
        # Controllers report the switch itself, within a second of sunset.
        assert any(abs(ts - sunset) <= 1.0 and s == "on" for ts, s in seen), lamp


def test_truth_in_a_dusk_window(two_hours: tuple[Simulation, list[Message]]) -> None:
    sim, _ = two_hours
    truth = sim.truth()
    kinds = {e["kind"] for e in truth}
    assert {"lamp_out", "day_burn", "circuit_outage", "bin_fire", "dust_exceedance"} <= kinds
    assert "night_noise" not in kinds  # 16:00-18:00 has no 22:00-06:00
    for e in truth:
        assert e["kind"] in CONTRACT_KINDS or e["kind"] in (
            "malformed", "duplicate", "out_of_order", "clock_skew",
        )  # fmt: skip
        assert sim.t0 <= parse_iso(e["start"]) <= sim.t1


def test_presence_online_first_then_offline_and_back_for_silence(
    two_hours: tuple[Simulation, list[Message]],
) -> None:
    sim, msgs = two_hours
    status = [m for m in msgs if m.kind == "status"]
    publishers = {d.publisher_id for d in sim.city.devices.values()}
    first = status[: len(publishers)]
    assert {m.publisher for m in first} == publishers
    assert all(m.payload == b"online" and m.t == int(sim.t0) for m in first)
    silent = [
        e for e in sim.truth()
        if e["kind"] == "device_silence" and not sim.city.devices[e["target"]].concentrator_id
    ]  # fmt: skip
    offline = {m.publisher for m in status if m.payload == b"offline"}
    assert offline == {e["target"] for e in silent}


def test_no_transport_faults_when_rate_is_zero() -> None:
    msgs = stream(6, hours=0.5, transport_rate=0.0)
    assert not [m for m in msgs if m.kind == "malformed"]
    keys = [k for m in msgs for k in m.readings]
    assert len(keys) == len(set(keys))


def test_pacer_maps_simulated_to_wall_time() -> None:
    p = Pacer(sim_start=START, wall_start=100.0, speed=60.0)
    assert p.wall_at(START + 3600) == 160.0
    assert Pacer(START, 100.0, 0.0).wall_at(START + 3600) == 100.0


def test_city_can_be_passed_in() -> None:
    city = CityModel.generate(9, 1)
    sim = Simulation(SimConfig(seed=9, start=START, sim_seconds=60), city)
    assert sim.city is city and sum(1 for _ in sim.messages()) > 0
