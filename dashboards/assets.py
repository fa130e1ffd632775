"""The asset register in InfluxDB: each device's position, for the dashboards' maps.

Readings of fixed devices (lamps, bins, dust sensors) carry no coordinates; the city model
does. ``citywatch dashboards assets --city-model city.json`` writes one ``assets`` point per
device (tags device_id, family, district; fields lat, lon) into the ``kpi`` retention policy,
at the time of writing; rewriting replaces nothing older, and the maps take each device's
last position.

Example:
    >>> from citywatch.citymodel import CityModel
    >>> lines = asset_lines(CityModel.generate(1, 1), 10**18)
    >>> lines[0].startswith("assets,device_id=")
    True
"""

from __future__ import annotations

import asyncio
import time

from citywatch.citymodel import CityModel
from citywatch.settings import Settings
from processors.sinks.influx import InfluxSink
from processors.sinks.lines import point_line


def asset_lines(city: CityModel, ts_ns: int) -> list[str]:
    out = []
    for dev in city.devices.values():
        if dev.lat is None or dev.lon is None:
            continue
        tags = {"device_id": dev.id, "family": str(dev.family), "district": dev.district}
        out.append(point_line("assets", tags, {"lat": dev.lat, "lon": dev.lon}, ts_ns))
    return out


def write_assets(s: Settings, city: CityModel) -> int:
    lines = asset_lines(city, time.time_ns())

    async def go() -> None:
        sink = InfluxSink(s)
        try:
            bucket = f"{s.influx.database}/{s.influx.kpi_retention_policy}"
            for i in range(0, len(lines), 5000):
                await sink.write(lines[i : i + 5000], bucket=bucket)
        finally:
            await sink.close()

    asyncio.run(go())
    return len(lines)
