"""The device registry the gateway enriches readings from: lamp -> circuit and cabinet.

Some lamp controllers (the binary frame, a cabinet concentrator) do not say which circuit they
are on, but the Kafka key of a streetlight reading is its circuit (the cable-theft rule must see
a whole circuit in one processor). The city's asset register — here the city model file —
fills the gap. Without a registry readings pass through unchanged.

Example:
    >>> reg = DeviceRegistry({"lamp-1": ("c-1", "cab-1")})
    >>> reg.lookup("lamp-1")
    ('c-1', 'cab-1')
"""

from __future__ import annotations

from pathlib import Path

import orjson


class DeviceRegistry:
    def __init__(self, lamps: dict[str, tuple[str | None, str | None]]) -> None:
        self.lamps = lamps

    @classmethod
    def load(cls, path: Path | None) -> DeviceRegistry:
        """Read a city model JSON (``citywatch.citymodel``); an absent file gives an empty one."""
        if path is None or not path.exists():
            return cls({})
        # Only two fields per lamp are needed: read the JSON directly rather than building
        # the whole geometric model in the gateway.
        data = orjson.loads(path.read_bytes())
        devices = data.get("devices", {})
        items = devices.values() if isinstance(devices, dict) else devices
        return cls(
            {
                d["id"]: (d.get("circuit_id"), d.get("cabinet_id"))
                for d in items
                if d.get("family") == "streetlight"
            }
        )

    def lookup(self, device_id: str) -> tuple[str | None, str | None] | None:
        return self.lamps.get(device_id)
