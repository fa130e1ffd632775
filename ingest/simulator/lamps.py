"""Street lamps: switched by sunset/sunrise, dimmed after midnight, reported every 5 min.

A lamp burns at its nominal power times the dimming level (with a per-lamp calibration of
±3 % and 1 % noise), at 230 V ± a cabinet bias and noise, power factor ≈ 0.95, current =
P / (V · pf). Controllers report every 300 s and on every switch (schedule on/off, dimming
steps, and a lamp failing or recovering). Concentrator cabinets send one binary frame with
all their lamps (the frame counter is each lamp's ``seq``); other lamps publish themselves,
one format per circuit (binary frame, native JSON or SenML).

Faults: ``lamp_out`` (off, 0 W), ``day_burn`` (on at 100 % while the schedule says off),
``circuit_outage`` (every lamp of the circuit: commanded on, 0 W, 0 A, 0 V — a dead feeder),
``lamp_degradation`` (power × factor while lit), ``voltage_out_of_band`` and
``device_silence`` (the lamp is left out / does not publish).

Commands (``command``; delivered by ``ingest.simulator.downlink``): ``switch`` and ``dim``
override the schedule (and a day-burning controller) until their ``duration_s`` or the
circuit's next scheduled switch; ``schedule`` replaces the lamp's on/off/dimming times;
``reboot`` drops every override; ``ping`` does nothing. A lamp reports at once after a
command that changes it. A dead lamp (``lamp_out``, ``circuit_outage``) still acknowledges,
but its next reading shows that nothing happened; a silent one does not answer at all.

Example:
    >>> from citywatch.citymodel import CityModel
    >>> from ingest.simulator.config import SimConfig
    >>> from ingest.simulator.context import SimContext
    >>> ctx = SimContext.build(CityModel.generate(1, 1), SimConfig(sim_seconds=900), 1.7e9)
    >>> lamps, out = Lamps(ctx), []
    >>> for t in range(1_700_000_000, 1_700_000_300):
    ...     lamps.emit(t, out)
    >>> reporting = {device for m in out for device, _seq in m.readings}
    >>> len(reporting) == len(ctx.city.devices_in("central", "streetlight"))
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from citywatch.citymodel import CityModel, Device, hhmm_seconds
from ingest.simulator.context import SimContext
from ingest.simulator.formats import Message, encode, lamp_frame
from ingest.simulator.truth import Fault

EVENT_KINDS = ("lamp_out", "day_burn", "circuit_outage")


@dataclass(slots=True)
class _Lamp:
    dev: Device
    lamp_no: int
    nominal: float
    calib: float
    vbias: float
    faults: list[Fault]


@dataclass(slots=True)
class _Publisher:
    dev: Device  # the topic's device: a concentrator's first lamp stands for the cabinet
    lamps: list[_Lamp]
    fmt: str
    concentrator: bool
    seq: int = 0


@dataclass(slots=True)
class _CircuitClock:
    """A circuit's schedule as absolute intervals over the run: (on, off) and dim steps."""

    lit: list[tuple[float, float]]
    dim: list[tuple[float, float, int]]
    outage: list[Fault] = field(default_factory=list)

    def expected(self, t: float) -> tuple[str, int]:
        for on, off in self.lit:
            if on <= t < off:
                for a, b, level in self.dim:
                    if a <= t < b:
                        return "dim", level
                return "on", 100
        return "off", 0


@dataclass(slots=True)
class _Override:
    """A commanded state (``until`` None: open-ended) or a commanded schedule."""

    state: str = "on"
    dim: int = 100
    until: float | None = None
    schedule: dict[str, Any] | None = None

    def expected(self, city: CityModel, t: float) -> tuple[str, int] | None:
        if self.until is not None and t >= self.until:
            return None
        if self.schedule is None:
            return self.state, self.dim
        sch = self.schedule
        day = city.local_day(t)
        for d in (day - 1, day):
            on = _at(city, sch["on"], d)
            off = _at(city, sch["off"], d)
            if off <= on:
                off = _at(city, sch["off"], d + 1)
            if on <= t < off:
                if "dim_level_pct" in sch:
                    for dd in (d, d + 1):
                        a = _at(city, sch["dim_from"], dd)
                        b = _at(city, sch["dim_to"], dd)
                        b = b if b > a else b + 86400
                        if a <= t < b:
                            return "dim", int(sch["dim_level_pct"])
                return "on", 100
        return "off", 0


def _at(city: CityModel, spec: str, day: int) -> float:
    """A schedule time ("HH:MM", "sunset", "sunrise-10" minutes) on a local day, in epoch s."""
    for name, idx in (("sunset", 1), ("sunrise", 0)):
        if spec.startswith(name):
            rest = spec[len(name) :]
            return city.sun_times(day)[idx] + (int(rest) * 60 if rest else 0)
    return city.local_midnight(day) + hhmm_seconds(spec)


class Lamps:
    """All streetlight publishers of the city."""

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        city = ctx.city
        self.rng = ctx.rng("lamps")
        self.interval = city.intervals_s["streetlight"]
        self.clocks: dict[str, _CircuitClock] = {}
        for cid, circuit in city.circuits.items():
            lit = city.lit_intervals(cid, ctx.t0 - 86400, ctx.t1 + 86400)
            dim = []
            for step in circuit.schedule.dimming:
                a, b = hhmm_seconds(step.start), hhmm_seconds(step.end)
                if b <= a:
                    b += 86400
                for day in range(city.local_day(ctx.t0) - 1, city.local_day(ctx.t1) + 1):
                    base = city.local_midnight(day)
                    dim.append((base + a, base + b, step.level_pct))
            self.clocks[cid] = _CircuitClock(lit, dim, ctx.faults(cid))
        self.overrides: dict[str, _Override] = {}
        self.lamp_of: dict[str, tuple[_Lamp, _Publisher]] = {}
        pubs: dict[str, _Publisher] = {}
        for dev in city.devices.values():
            if dev.family != "streetlight":
                continue
            assert dev.nominal_power_w is not None and dev.circuit_id is not None
            lamp_no = int(dev.id.rsplit("-", 1)[1]) if dev.concentrator_id else 0
            lamp = _Lamp(
                dev,
                lamp_no,
                dev.nominal_power_w,
                1.0 + self.rng.uniform(-0.03, 0.03),
                self.rng.uniform(-3.0, 3.0),
                ctx.faults(dev.id),
            )
            pub = pubs.get(dev.publisher_id)
            if pub is None:
                pub = pubs[dev.publisher_id] = _Publisher(
                    dev, [], dev.payload_format, dev.concentrator_id is not None
                )
            pub.lamps.append(lamp)
            self.lamp_of[dev.id] = (lamp, pub)
        self.buckets: list[list[_Publisher]] = [[] for _ in range(self.interval)]
        for pid, pub in pubs.items():
            self.buckets[ctx.phase(pid, self.interval)].append(pub)
        # second -> publishers reporting then (dict keyed by id(): ordered, O(1) dedupe)
        self.events: dict[int, dict[int, _Publisher]] = {}
        by_circuit: dict[str, list[_Publisher]] = {}
        for pub in pubs.values():
            for lamp in pub.lamps:
                assert lamp.dev.circuit_id is not None
                group = by_circuit.setdefault(lamp.dev.circuit_id, [])
                if not group or group[-1] is not pub:
                    group.append(pub)
                for f in lamp.faults:
                    if f.kind in EVENT_KINDS:
                        self._event(f.start, pub)
                        self._event(f.end, pub)
        for cid, group in by_circuit.items():
            times = city.switch_times(cid, ctx.t0, ctx.t1)
            times += [t for f in self.clocks[cid].outage for t in (f.start, f.end)]
            for t in times:
                for pub in group:
                    self._event(t, pub)

    def _event(self, t: float, pub: _Publisher) -> None:
        self.events.setdefault(math.ceil(t), {})[id(pub)] = pub

    def command(self, device_id: str, kind: str, params: dict[str, Any], t: int) -> str | None:
        """Apply a command at simulated second ``t``: the ack status ("ok", "unsupported"),
        or None when the lamp cannot answer (unknown here, or silent by a fault)."""
        found = self.lamp_of.get(device_id)
        if found is None:
            return None
        lamp, pub = found
        assert lamp.dev.circuit_id is not None
        fault = SimContext.active(lamp.faults, t)
        if fault is not None and fault.kind == "device_silence":
            return None
        if kind == "ping":
            return "ok"
        if kind == "reboot":
            self.overrides.pop(device_id, None)
        elif kind in ("switch", "dim"):
            if kind == "switch":
                state, dim = ("on", 100) if params.get("state") == "on" else ("off", 0)
            else:
                dim = int(params["level_pct"])
                state = "off" if dim == 0 else ("on" if dim >= 100 else "dim")
            until: float | None = None
            if params.get("duration_s"):
                until = t + float(params["duration_s"])
            else:
                # Like a real controller: a manual override lasts until the next switch
                # of the circuit's own schedule.
                nxt = self.ctx.city.switch_times(lamp.dev.circuit_id, t + 1, t + 2 * 86400)
                until = nxt[0] if nxt else None
            self.overrides[device_id] = _Override(state, dim, until)
        elif kind == "schedule":
            self.overrides[device_id] = _Override(schedule=dict(params))
        else:
            return "unsupported"
        self._event(t + 1, pub)  # controllers report on every change
        return "ok"

    def emit(self, t: int, out: list[Message]) -> None:
        due = self.buckets[t % self.interval]
        extra = self.events.pop(t, None)
        if extra:
            for pub in due:
                extra.pop(id(pub), None)
            due = due + list(extra.values())
        for pub in due:
            msg = self.report(pub, t)
            if msg is not None:
                out.append(msg)

    def report(self, pub: _Publisher, t: int) -> Message | None:
        records: list[tuple[_Lamp, dict[str, Any]]] = []
        for lamp in pub.lamps:
            fields = self.fields(lamp, t)
            if fields is not None:
                records.append((lamp, fields))
        if not records:
            return None
        pub.seq += 1
        seq = pub.seq
        if pub.concentrator:
            payload = lamp_frame([(lp.lamp_no, f) for lp, f in records], t, seq)
            keys = tuple((lp.dev.id, seq) for lp, _ in records)
        else:
            lamp, fields = records[0]
            ts = self.ctx.device_ts(lamp.dev.id, t)
            payload = encode(pub.fmt, lamp.dev.id, ts, seq, fields)
            keys = ((lamp.dev.id, seq),)
        return self.ctx.message(t, pub.dev, payload, keys)

    def fields(self, lamp: _Lamp, t: float) -> dict[str, Any] | None:
        rng = self.rng
        dev = lamp.dev
        assert dev.circuit_id is not None
        clock = self.clocks[dev.circuit_id]
        state, dim = clock.expected(t)
        fault = SimContext.active(lamp.faults, t) or SimContext.active(clock.outage, t)
        kind = fault.kind if fault else None
        if kind == "device_silence":
            assert fault is not None
            fault.mark()
            return None
        volts = 230.0 + lamp.vbias + rng.gauss(0.0, 1.2)
        if kind == "day_burn":
            state, dim = "on", 100
        ov = self.overrides.get(dev.id) if self.overrides else None
        if ov is not None:
            commanded = ov.expected(self.ctx.city, t)
            if commanded is None:
                del self.overrides[dev.id]
            else:
                state, dim = commanded
        if kind == "lamp_out":
            state, dim = "off", 0
        power = 0.0
        if state != "off":
            power = lamp.nominal * lamp.calib * dim / 100.0 * (1.0 + rng.gauss(0.0, 0.01))
            if kind == "lamp_degradation":
                assert fault is not None
                power *= float(fault.params["factor"])
        if kind == "voltage_out_of_band":
            assert fault is not None
            volts = float(fault.params["voltage"]) + rng.gauss(0.0, 0.8)
        if kind == "circuit_outage":
            power, volts = 0.0, 0.0
        # A degradation only shows while the lamp burns.
        if fault is not None and (kind != "lamp_degradation" or state != "off"):
            fault.mark()
        out: dict[str, Any] = {
            "power_state": state,
            "dimming_pct": dim,
            "power_w": round(power, 1),
            "voltage_v": round(volts, 2),
        }
        if power > 0.0:
            pf = (0.95 if dim >= 100 else 0.93) + rng.gauss(0.0, 0.004)
            out["current_a"] = round(power / (volts * pf), 3)
            out["power_factor"] = round(pf, 3)
        else:
            out["current_a"] = 0.0
        if dev.payload_format != "lamp_binary":
            # The binary frame has no room for them; JSON controllers know their circuit.
            out["circuit_id"] = dev.circuit_id
            out["cabinet_id"] = dev.cabinet_id
        return out
