"""Simulated lamps obey commands: the next report shows the commanded state."""

from __future__ import annotations

from typing import Any

from citywatch.citymodel import CityModel
from ingest.simulator.config import SimConfig
from ingest.simulator.engine import Simulation

CITY = CityModel.generate(5, 1)


def _sim() -> Simulation:
    cfg = SimConfig(
        seed=5,
        sim_seconds=3 * 3600,
        fault_rate=0.0,
        min_faults_per_kind=0,
        transport_rate=0.0,
        clock_skew_rate=0.0,
        presence=False,
    )
    return Simulation(cfg, CITY)


def _json_lamp(sim: Simulation) -> Any:
    return min(
        (
            d
            for d in CITY.devices.values()
            if d.family == "streetlight"
            and d.payload_format == "json_native"
            and not d.concentrator_id
        ),
        key=lambda d: d.id,
    )


def _next_fields(sim: Simulation, msgs: Any, dev_id: str) -> tuple[int, dict[str, Any]]:
    lamps = sim.lamps
    lamp, _ = lamps.lamp_of[dev_id]
    for m in msgs:
        if any(d == dev_id for d, _ in m.readings):
            fields = lamps.fields(lamp, m.t)
            assert fields is not None
            return m.t, fields
    raise AssertionError("no report")


def test_switch_dim_reboot_change_the_next_report() -> None:
    sim = _sim()
    dev = _json_lamp(sim)
    msgs = sim.messages()
    next(msgs)
    t_cmd = sim.now
    assert sim.command(dev.id, "switch", {"state": "on", "duration_s": 3600}) == "ok"
    t, fields = _next_fields(sim, msgs, dev.id)
    assert t == t_cmd + 1  # reported at once, not at the next 5-minute report
    assert fields["power_state"] == "on" and fields["power_w"] > 0
    assert sim.command(dev.id, "dim", {"level_pct": 30}) == "ok"
    _, fields = _next_fields(sim, msgs, dev.id)
    assert (fields["power_state"], fields["dimming_pct"]) == ("dim", 30)
    assert sim.command(dev.id, "reboot", {}) == "ok"
    _, fields = _next_fields(sim, msgs, dev.id)
    exp = CITY.lamp_expected(dev.id, sim.now)
    assert fields["power_state"] == exp.state  # back on its schedule
    assert sim.command(dev.id, "ping", {}) == "ok"
    assert sim.command("no-such-lamp", "ping", {}) is None
    assert sim.command(dev.id, "selfdestruct", {}) == "unsupported"


def test_schedule_override() -> None:
    sim = _sim()
    dev = _json_lamp(sim)
    msgs = sim.messages()
    next(msgs)
    local = CITY.local_time(sim.now)
    # on for the whole current local hour window around now: on at now-1h, off at now+2h
    on = f"{(local.hour - 1) % 24:02d}:00"
    off = f"{(local.hour + 2) % 24:02d}:00"
    assert sim.command(dev.id, "schedule", {"on": on, "off": off}) == "ok"
    _, fields = _next_fields(sim, msgs, dev.id)
    assert fields["power_state"] == "on"
