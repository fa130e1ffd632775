"""Resolve a command's target (device, circuit, cabinet, district) to its district and devices.

The city model (``citywatch.citymodel``, the asset register the simulator writes and the
processors read) says which lamps hang on a circuit or cabinet and where each device sits.
Lamps behind a cabinet concentrator are reached through the concentrator's MQTT topic.

Example:
    >>> from citywatch.citymodel import CityModel
    >>> t = Targets(CityModel.generate(1, 1))
    >>> cid = next(iter(t.city.circuits))
    >>> r = t.resolve("circuit", cid)
    >>> r.district == t.city.circuits[cid].district, len(r.devices) > 5
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from citywatch.citymodel import CityModel, Device
from citywatch.settings import Settings
from commands.model import COMMANDABLE_FAMILIES, CommandError


class UnknownTarget(CommandError):
    """The target is not in the city model."""


@dataclass(frozen=True, slots=True)
class Resolved:
    district: str
    devices: tuple[Device, ...]


def city_model_path(settings: Settings) -> Path:
    return (
        settings.commands.city_model
        or settings.processor.city_model
        or settings.gateway.device_registry
        or settings.state_dir / "city.json"
    )


class Targets:
    def __init__(self, city: CityModel) -> None:
        self.city = city

    @classmethod
    def load(cls, settings: Settings) -> Targets:
        path = city_model_path(settings)
        if not path.exists():
            raise CommandError(
                f"no city model at {path}: set commands.city_model (or run `citywatch simulate`"
                " once, which writes it)"
            )
        return cls(CityModel.load(path))

    def resolve(self, target_type: str, target: str) -> Resolved:
        city = self.city
        if target_type == "device":
            dev = city.devices.get(target)
            if dev is None:
                raise UnknownTarget(f"unknown device {target!r}")
            if dev.family not in COMMANDABLE_FAMILIES:
                raise CommandError(f"{target} is a {dev.family} device: it takes no commands")
            return Resolved(dev.district, (dev,))
        if target_type == "circuit":
            circuit = city.circuits.get(target)
            if circuit is None:
                raise UnknownTarget(f"unknown circuit {target!r}")
            lamps = tuple(city.devices[i] for i in circuit.lamp_ids if i in city.devices)
            return Resolved(circuit.district, lamps)
        if target_type == "cabinet":
            cab = city.cabinets.get(target)
            if cab is None:
                raise UnknownTarget(f"unknown cabinet {target!r}")
            lamps = tuple(
                city.devices[i]
                for cid in cab.circuit_ids
                for i in city.circuits[cid].lamp_ids
                if i in city.devices
            )
            return Resolved(cab.district, lamps)
        if target_type == "district":
            if target not in city.districts:
                raise UnknownTarget(f"unknown district {target!r}")
            devs = tuple(
                d
                for d in city.devices.values()
                if d.district == target and d.family in COMMANDABLE_FAMILIES
            )
            return Resolved(target, devs)
        raise CommandError(f"unknown target type {target_type!r}")
