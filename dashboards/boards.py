"""The six dashboards, built with grafana-foundation-sdk from the KPIs and a few view queries.

Operations overview, Streetlights, Sanitation, Muck trucks, Construction dust and noise,
Pipeline health. Every dashboard has the ``$district`` and ``$family`` variables; every query
is raw InfluxQL (tests/integration/test_dashboards.py runs each against InfluxDB).

Example:
    >>> from citywatch.settings import Settings
    >>> [d.title for d in build_all(Settings())][:2]
    ['citywatch — Operations overview', 'citywatch — Streetlights']
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from citywatch.settings import Settings
from dashboards import panels as P
from dashboards.kpis import DISTRICT, Format, Kpi, kpis, open_alerts_subquery
from processors.config import RulesConfig

MUCK_KINDS = "corridor_violation|illegal_dump|daytime_hauling"


def _q(
    key: str,
    title: str,
    query: str,
    cols: tuple[str, ...],
    *,
    unit: str = "short",
    fmt: Format = "table",
    doc: str = "",
    tags: tuple[str, ...] = (),
) -> Kpi:
    return Kpi(key, title, unit, query, cols, fmt, doc, tags)


def alerts_raised(family: str, kinds: str = "") -> Kpi:
    kind = f" AND kind =~ /^({kinds})$/" if kinds else ""
    return _q(
        f"alerts_{family}",
        "Alerts raised",
        "SELECT alert_id, severity, message, value FROM alerts WHERE $timeFilter AND "
        f"family = '{family}'{kind} AND {DISTRICT} AND state = 'raised' GROUP BY kind, target",
        ("alert_id", "severity", "message"),
        tags=("kind", "target"),
    )


def views(s: Settings) -> dict[str, Kpi]:
    """Queries that show data rather than compute a KPI (maps, tracks, raw series)."""
    tz = s.grafana.timezone
    out = [
        _q(
            "assets",
            "Device positions",
            'SELECT last(lat) AS lat, last(lon) AS lon FROM "kpi"."assets" WHERE '
            f"family =~ /^$family$/ AND {DISTRICT} GROUP BY device_id, family, district",
            ("lat", "lon"),
            doc="the asset register (`citywatch dashboards assets`), no time bound",
            tags=("device_id", "family", "district"),
        ),
        _q(
            "device_open_alerts",
            "Open alerts per device",
            "SELECT count(alert_id) AS status FROM ("
            + open_alerts_subquery(f"{DISTRICT} AND target_type = 'device'")
            + ") WHERE state != 'cleared' GROUP BY target",
            ("status",),
            doc="status = open alerts on the device (0 = healthy)",
            tags=("target",),
        ),
        _q(
            "lamps_lit",
            "Lamps lit",
            "SELECT count(power_w) AS lamps_lit FROM streetlight WHERE $timeFilter AND "
            f"{DISTRICT} AND power_w > 0 GROUP BY time(5m), district fill(0)",
            ("lamps_lit",),
            fmt="time_series",
            tags=("district",),
        ),
        _q(
            "lamp_power",
            "Lighting load",
            "SELECT sum(p) / 1000 AS kw FROM (SELECT mean(power_w) AS p FROM streetlight WHERE "
            f"$timeFilter AND {DISTRICT} GROUP BY time(5m), device_id, district) "
            "WHERE $timeFilter GROUP BY time(5m), district fill(none)",
            ("kw",),
            unit="kwatt",
            fmt="time_series",
            tags=("district",),
        ),
        _q(
            "lamp_voltage",
            "Supply voltage",
            "SELECT min(voltage_v) AS min_v, mean(voltage_v) AS mean_v, max(voltage_v) AS max_v "
            f"FROM streetlight WHERE $timeFilter AND {DISTRICT} AND voltage_v > 0 "
            "GROUP BY time($__interval) fill(none)",
            ("min_v", "mean_v", "max_v"),
            unit="volt",
            fmt="time_series",
        ),
        _q(
            "overflow_cleared",
            "Bin overflows served",
            "SELECT episode_start, alert_id FROM alerts WHERE $timeFilter AND "
            f"kind = 'bin_overflow' AND state = 'cleared' AND {DISTRICT} GROUP BY target",
            ("episode_start", "alert_id"),
            doc="overflow response time = emptied (alert cleared) - overflow start",
            tags=("target",),
        ),
        _q(
            "muck_tracks",
            "Muck truck tracks",
            "SELECT last(lat) AS lat, last(lon) AS lon, max(speed_kmh) AS speed FROM vehicle "
            f"WHERE $timeFilter AND vehicle_kind = 'muck' AND {DISTRICT} "
            "GROUP BY time(1m), device_id fill(none)",
            ("lat", "lon", "speed"),
            tags=("device_id",),
        ),
        _q(
            "muck_trips",
            "Muck trucks per day",
            "SELECT last(mileage_km) AS mileage_km, last(operating_h) AS operating_h, "
            f'last(route_coverage) AS route_coverage FROM "{s.grafana.trips_rp}"."trips" '
            "WHERE $timeFilter AND kind = 'muck' GROUP BY vehicle, day",
            ("mileage_km", "operating_h", "route_coverage"),
            tags=("vehicle", "day"),
        ),
        _q(
            "muck_violations_daily",
            "Muck violations per day",
            "SELECT count(alert_id) AS violations FROM alerts WHERE $timeFilter AND "
            f"kind =~ /^({MUCK_KINDS})$/ AND state = 'raised' AND {DISTRICT} "
            f"GROUP BY time(1d), kind fill(0) tz('{tz}')",
            ("violations",),
            fmt="time_series",
            tags=("kind",),
        ),
        _q(
            "pm10",
            "PM10 per site",
            "SELECT mean(pm10_ugm3) AS pm10 FROM dust WHERE $timeFilter AND "
            f"{DISTRICT} GROUP BY time($__interval), site_id fill(none)",
            ("pm10",),
            unit="conμgm3",
            fmt="time_series",
            tags=("site_id",),
        ),
        _q(
            "noise",
            "Noise per site",
            "SELECT mean(noise_dba) AS noise FROM dust WHERE $timeFilter AND "
            f"{DISTRICT} GROUP BY time($__interval), site_id fill(none)",
            ("noise",),
            unit="dB",
            fmt="time_series",
            tags=("site_id",),
        ),
        _q(
            "readings_by_family",
            "Readings stored per family (device time)",
            "SELECT count(received_at) AS readings FROM streetlight, bin, vehicle, dust "
            "WHERE $timeFilter GROUP BY time($__interval) fill(none)",
            ("readings",),
            fmt="time_series",
        ),
    ]
    return {k.key: k for k in out}


def _dashboard(s: Settings, uid: str, title: str, tags: list[str]) -> db.Dashboard:
    return (
        db.Dashboard(f"citywatch — {title}")
        .uid(f"citywatch-{uid}")
        .tags(["citywatch", *tags])
        .timezone(s.grafana.timezone)
        .time("now-24h", "now")
        .refresh("1m")
        .editable()
        .variables(P.variables(s.grafana.datasource_uid))
    )


def overview(s: Settings, k: dict[str, Kpi], v: dict[str, Kpi]) -> db.Dashboard:
    ds = s.grafana.datasource_uid
    ok_rate = ((None, "red"), (0.95, "orange"), (0.98, "green"))
    integrity = P.ratio_stat(
        "Facility integrity — $family",
        k["devices_faulty"],
        k["devices_reporting"],
        "1 - $A / $B",
        ds,
        span=6,
    ).repeat("family")
    return (
        _dashboard(s, "overview", "Operations overview", ["overview"])
        .with_row(db.Row("KPIs"))
        # From the roll-up: over the readings, the board's 24 h take ~25 s per 5,000 lamps.
        .with_panel(P.kpi_stat(k["lighting_rate_rollup"], ds, steps=ok_rate))
        .with_panel(P.kpi_stat(k["bins_over"], ds, steps=((None, "green"), (1, "orange"))))
        .with_panel(P.kpi_stat(k["vehicles_moving"], ds))
        .with_panel(integrity)
        .with_row(db.Row("Alerts"))
        .with_panel(P.bars("Open alerts by severity", k["open_alerts_by_severity"], ds, span=8))
        .with_panel(P.kpi_table("Open alerts", k["open_alerts"], ds, span=16))
        .with_row(db.Row("Map"))
        .with_panel(
            P.points_map(
                "Devices by status (open alerts)",
                [v["assets"], v["device_open_alerts"]],
                ds,
                lat=s.city.latitude,
                lon=s.city.longitude,
                color_field="status",
                span=24,
                transformations=[
                    dm.DataTransformerConfig(
                        id_val="organize", options={"renameByName": {"target": "device_id"}}
                    ),
                    dm.DataTransformerConfig(
                        id_val="joinByField", options={"byField": "device_id", "mode": "outer"}
                    ),
                ],
            )
        )
        .with_row(db.Row("Work orders"))
        .with_panel(
            P.kpi_stat(
                k["workorder_closure"], ds, steps=((None, "red"), (0.9, "orange"), (0.96, "green"))
            )
        )
        .with_panel(P.kpi_table("Work orders", k["workorders"], ds, span=20))
    )


def streetlights(s: Settings, k: dict[str, Kpi], v: dict[str, Kpi]) -> db.Dashboard:
    ds = s.grafana.datasource_uid
    ok_rate = ((None, "red"), (0.95, "orange"), (0.98, "green"))
    return (
        _dashboard(s, "streetlights", "Streetlights", ["streetlight"])
        .with_panel(P.kpi_stat(k["lighting_rate_city"], ds, span=6, steps=ok_rate))
        .with_panel(P.bars("Lighting rate by district", k["lighting_rate"], ds, span=18))
        .with_panel(P.series("Lighting rate per hour", [k["lighting_rate_hourly"]], ds))
        # From the hourly roll-up: a month of these is one quick query (dashboards/rollup.py).
        .with_panel(P.kpi_stat(k["lighting_rate_rollup"], ds, span=6, steps=ok_rate))
        .with_panel(P.series("Lighting rate per day", [k["lighting_rate_daily"]], ds, span=18))
        .with_panel(P.series("Lamps lit", [v["lamps_lit"]], ds))
        .with_panel(P.series("Lighting load", [v["lamp_power"]], ds))
        .with_panel(
            P.series(
                "Supply voltage",
                [v["lamp_voltage"]],
                ds,
                steps=((None, "red"), (198, "green"), (242, "red")),
            )
        )
        .with_panel(P.kpi_table("Streetlight alerts", alerts_raised("streetlight"), ds, span=24))
    )


def sanitation(s: Settings, k: dict[str, Kpi], v: dict[str, Kpi]) -> db.Dashboard:
    ds = s.grafana.datasource_uid
    minutes = [
        P.calculate("start_ms", "episode_start", "/", "1000000"),
        P.calculate("response_ms", "Time", "-", "start_ms"),
    ]
    return (
        _dashboard(s, "sanitation", "Sanitation (bins and vehicles)", ["bin", "vehicle"])
        .with_panel(P.kpi_stat(k["bins_over"], ds, span=6, steps=((None, "green"), (1, "orange"))))
        .with_panel(P.series("Mean bin fill", [k["bin_fill"]], ds, span=18))
        .with_panel(P.series("Vehicles on the move", [k["vehicles_moving"]], ds))
        .with_panel(
            P.kpi_table(
                "Overflow response (overflow → emptied)",
                v["overflow_cleared"],
                ds,
                transformations=minutes,
            )
        )
        .with_panel(P.kpi_table("Vehicles per day", k["trips"], ds, span=24))
        .with_panel(P.kpi_table("Bin alerts", alerts_raised("bin"), ds, span=24))
    )


def muck(s: Settings, k: dict[str, Kpi], v: dict[str, Kpi]) -> db.Dashboard:
    ds = s.grafana.datasource_uid
    return (
        _dashboard(s, "muck", "Muck trucks", ["vehicle", "muck"])
        .with_panel(
            P.points_map(
                "Tracks",
                [v["muck_tracks"]],
                ds,
                lat=s.city.latitude,
                lon=s.city.longitude,
                color_field="speed",
                span=24,
                route=True,
            )
        )
        .with_panel(
            P.series("Corridor violations, suspected dumps", [v["muck_violations_daily"]], ds)
        )
        .with_panel(
            P.kpi_table(
                "Corridor violations and suspected dumps",
                alerts_raised("vehicle", MUCK_KINDS),
                ds,
            )
        )
        .with_panel(P.kpi_table("Muck trucks per day", v["muck_trips"], ds, span=24))
    )


def dust(s: Settings, k: dict[str, Kpi], v: dict[str, Kpi]) -> db.Dashboard:
    ds = s.grafana.datasource_uid
    d = RulesConfig.load(s.processor.rules_file).dust
    return (
        _dashboard(s, "dust", "Construction dust and noise", ["dust"])
        .with_panel(
            P.series("PM10", [v["pm10"]], ds, steps=((None, "green"), (d.pm10_limit_ugm3, "red")))
        )
        .with_panel(
            P.series(
                "Noise (night limit)",
                [v["noise"]],
                ds,
                steps=((None, "green"), (d.noise_night_dba, "red")),
            )
        )
        .with_panel(P.kpi_table("Now vs limit", k["dust_now"], ds))
        .with_panel(P.kpi_table("Hours over the PM10 limit per day", k["dust_hours_over"], ds))
        .with_panel(P.kpi_table("Dust and noise alerts", alerts_raised("dust"), ds, span=24))
    )


def pipeline(s: Settings, k: dict[str, Kpi], v: dict[str, Kpi]) -> db.Dashboard:
    ds = s.grafana.datasource_uid
    return (
        _dashboard(s, "pipeline", "Pipeline health", ["pipeline"])
        .with_panel(P.series("Readings in and written", [k["pipeline_rates"]], ds))
        .with_panel(P.series("Dead letters by reason", [k["pipeline_deadletters"]], ds))
        .with_panel(P.series("Kafka consumer lag", [k["pipeline_lag"]], ds))
        .with_panel(P.series("InfluxDB write latency", [k["pipeline_write_latency"]], ds))
        .with_panel(
            P.series("MQTT broker: dropped (lost) and stored messages", [k["pipeline_broker"]], ds)
        )
        .with_panel(
            P.series("Readings stored (device time)", [v["readings_by_family"]], ds, span=24)
        )
        .with_panel(P.series("Alert events per day", [k["alerts_per_day"]], ds, span=24, bars=True))
    )


BOARDS = {
    "overview": overview,
    "streetlights": streetlights,
    "sanitation": sanitation,
    "muck": muck,
    "dust": dust,
    "pipeline": pipeline,
}


def build_all(s: Settings) -> list[dm.Dashboard]:
    k, v = kpis(s), views(s)
    return [fn(s, k, v).build() for fn in BOARDS.values()]


def all_queries(s: Settings) -> dict[str, Kpi]:
    """Every query a panel may carry, by its InfluxQL text (the tests look panels up here)."""
    ks = [*kpis(s).values(), *views(s).values()]
    ks += [alerts_raised(f) for f in ("streetlight", "bin", "dust")]
    ks.append(alerts_raised("vehicle", MUCK_KINDS))
    return {k.query: k for k in ks}
