"""The bureau's KPIs as InfluxQL, in one place: the dashboards and the daily report both use these.

Every KPI is computed at query time from what the processors already write (readings per
family, ``alerts``, and the ``trips`` KPI points of the trip-summary rule), plus the
``pipeline`` measurement and the hourly lighting roll-up (``dashboards.rollup``) of
``citywatch dashboards monitor``; docs/kpis.md gives the formulas
and why query time (not continuous queries: those run on wall-clock intervals and would miss
backfilled or simulated device time).

Queries are Grafana-flavoured InfluxQL: ``$timeFilter``, ``$__interval`` and template variables
(``$district``, ``$family``) are expanded by Grafana, or by :func:`expand` for the report and
the tests. Thresholds come from the processors' rules file, so a KPI and its alert agree.

Indicators: InfluxQL has no ``CASE``; ``ceil((x - limit) / 1e6)`` is 1 when x > limit and 0
otherwise (for |x - limit| < 10^6), which lets ``sum`` count and ``mean`` give a share.

Example:
    >>> from citywatch.settings import Settings
    >>> k = kpis(Settings())["lighting_rate"]
    >>> q = expand(k.query, start="2026-11-22T08:00:00Z", end="2026-11-23T00:00:00Z",
    ...            variables={"district": ["central"]})
    >>> "district =~ /^(central)$/" in q and "$" not in q.replace("$/", "")
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from citywatch.settings import Settings
from processors.config import RulesConfig

Format = Literal["time_series", "table"]

DISTRICT = "district =~ /^$district$/"
# An indicator that is 1 when ``expr`` > ``limit`` and 0 otherwise (see the module docstring).
_IND = "ceil(({expr} - {limit}) / 1000000)"


def indicator(expr: str, limit: float) -> str:
    return _IND.format(expr=expr, limit=limit)


@dataclass(frozen=True)
class Kpi:
    """One KPI: what it is, its InfluxQL, and the columns a result must have."""

    key: str
    title: str
    unit: str  # a Grafana unit id (percentunit, h, km, short, ...)
    query: str
    columns: tuple[str, ...]
    fmt: Format = "table"
    doc: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)  # GROUP BY tags of the result


def lighting_subquery(where: str = f"$timeFilter AND {DISTRICT}") -> str:
    """Per circuit and 5 min: lamp readings, lit ones, and whether the circuit was switched on.

    A circuit counts as switched on (lamps *should* be lit) when most of its lamps report a
    commanded dimming level > 0; a lamp that is out reports 0 % and 0 W, a dead feeder (cable
    theft) reports its commanded level with 0 W, so both count against the rate. ``lit`` and
    ``switched_on`` are the 1/0 indicators the processor stores with every lamp reading
    (``processors.sinks.lines.lamp_indicators``): plain aggregates over stored fields.
    """
    return (
        "SELECT sum(lit) AS lit_n, count(lit) AS n, mean(switched_on) AS cmd "
        f"FROM streetlight WHERE {where} GROUP BY time(5m), circuit_id, district"
    )


LIGHTING_RATE = "sum(lit_n) / sum(n) AS lighting_rate"
# The two counts the rate divides, and where the hourly roll-up keeps them (dashboards.rollup).
LIGHTING_COUNTS = "sum(lit_n) AS lit, sum(n) AS n"
LIGHTING_ROLLUP = "lighting_hourly"


def lighting_rate_query(
    where: str = f"$timeFilter AND {DISTRICT}",
    window: str = "$timeFilter",
    tail: str = "",
    select: str = LIGHTING_RATE,
) -> str:
    """Lit lamp readings / lamp readings over the 5-min circuit slots that were switched on.

    ``where`` selects the lamp readings, ``window`` is the outer query's time range and
    ``tail`` its GROUP BY (or nothing, for one figure); ``select`` may ask for the counts.
    """
    return f"SELECT {select} FROM ({lighting_subquery(where)}) WHERE {window} AND cmd > 0.5{tail}"


def open_alerts_subquery(where: str) -> str:
    """The latest event of each (target, kind) episode chain in range; open = not cleared."""
    return (
        "SELECT last(alert_id) AS alert_id, state, severity, message FROM alerts "
        f"WHERE $timeFilter AND {where} GROUP BY target, kind, family, district"
    )


def kpis(s: Settings, rules: RulesConfig | None = None) -> dict[str, Kpi]:
    r = rules or RulesConfig.load(s.processor.rules_file)
    fill = r.bin.overflow_fill
    pm10 = r.dust.pm10_limit_ugm3
    tz = s.grafana.timezone
    trips = f'"{s.grafana.trips_rp}"."trips"'
    rollup = f'"{s.influx.kpi_retention_policy}"."{LIGHTING_ROLLUP}"'
    # The lighting rate over the range from the hourly counts (dashboards.rollup).
    rollup_rate = (
        f"SELECT sum(lit) / sum(n) AS lighting_rate FROM {rollup} WHERE $timeFilter AND {DISTRICT}"
    )
    pipe = s.grafana.monitor_measurement
    out = [
        # The per-district views read the hourly roll-up: over the readings, InfluxDB 1.12
        # groups a subquery by district 7-14 times slower than by its own tags (~6 s per
        # hour of 5,000 lamps), so a night's panel would time out on a real city. The
        # monitor keeps the roll-up's current hour at most grafana.rollup_interval_s behind.
        Kpi(
            "lighting_rate",
            "Lighting rate",
            "percentunit",
            f"{rollup_rate} GROUP BY district",
            ("lighting_rate",),
            doc="lamp readings with power > 0 / lamp readings while their circuit is "
            "switched on (night hours), by district, over the whole hours in range "
            "(hourly roll-up)",
            tags=("district",),
        ),
        Kpi(
            "lighting_rate_city",
            "Lighting rate (city)",
            "percentunit",
            lighting_rate_query(),
            ("lighting_rate",),
            doc="as lighting_rate, all selected districts together",
        ),
        Kpi(
            "lighting_rate_hourly",
            "Lighting rate per hour",
            "percentunit",
            f"{rollup_rate} GROUP BY time(1h), district fill(none) tz('{tz}')",
            ("lighting_rate",),
            fmt="time_series",
            doc="per hour and district, from the hourly roll-up",
            tags=("district",),
        ),
        Kpi(
            "lighting_rate_rollup",
            "Lighting rate, whole range",
            "percentunit",
            rollup_rate,
            ("lighting_rate",),
            doc="as lighting_rate_city, from the hourly roll-up (dashboards/rollup.py): "
            "quick over a month",
        ),
        Kpi(
            "lighting_rate_daily",
            "Lighting rate per day",
            "percentunit",
            f"{rollup_rate} GROUP BY time(1d), district fill(none) tz('{tz}')",
            ("lighting_rate",),
            fmt="time_series",
            doc="per local day and district, from the hourly roll-up",
            tags=("district",),
        ),
        Kpi(
            "devices_reporting",
            "Devices reporting",
            "short",
            "SELECT count(n) AS devices FROM (SELECT count(received_at) AS n "
            f"FROM /^$family$/ WHERE $timeFilter AND {DISTRICT} GROUP BY device_id)",
            ("devices",),
            doc="devices of the family with at least one reading in range",
        ),
        Kpi(
            "devices_faulty",
            "Devices with an open fault",
            "short",
            "SELECT count(n) AS faulty FROM (SELECT count(alert_id) AS n FROM ("
            + open_alerts_subquery(
                f"family =~ /^$family$/ AND {DISTRICT} AND target_type = 'device'"
            )
            + ") WHERE state != 'cleared' GROUP BY target)",
            ("faulty",),
            doc="devices whose latest alert event of some kind is not 'cleared' "
            "(device_silence included: a silent device is not healthy)",
        ),
        Kpi(
            "open_alerts_by_severity",
            "Open alerts by severity",
            "short",
            "SELECT count(alert_id) AS open FROM ("
            + open_alerts_subquery(DISTRICT)
            + ") WHERE state != 'cleared' GROUP BY severity",
            ("open",),
            tags=("severity",),
        ),
        Kpi(
            "open_alerts",
            "Open alerts",
            "short",
            "SELECT alert_id, severity, message FROM ("
            + open_alerts_subquery(DISTRICT)
            + ") WHERE state != 'cleared' GROUP BY target, kind, family, district",
            ("alert_id", "severity", "message"),
            tags=("target", "kind", "family", "district"),
        ),
        Kpi(
            "alerts_per_day",
            "Alert events per day",
            "short",
            f"SELECT count(alert_id) AS events FROM alerts WHERE $timeFilter AND {DISTRICT} "
            f"GROUP BY time(1d), state fill(0) tz('{tz}')",
            ("events",),
            fmt="time_series",
            doc="raised / escalated / cleared events per local day",
            tags=("state",),
        ),
        Kpi(
            "cleared_alerts",
            "Cleared alerts (time to clear)",
            "s",
            "SELECT episode_start, alert_id FROM alerts WHERE $timeFilter AND "
            f"{DISTRICT} AND state = 'cleared' GROUP BY kind, target",
            ("episode_start", "alert_id"),
            doc="time to clear = time of the 'cleared' event - episode_start "
            "(InfluxQL cannot subtract times: the report and a Grafana transformation do it)",
            tags=("kind", "target"),
        ),
        Kpi(
            "bins_over",
            "Bins over threshold now",
            "short",
            "SELECT sum(over) AS bins_over FROM (SELECT "
            f"{indicator('last(fill_ratio)', fill - 1e-9)} AS over FROM bin "
            f"WHERE $timeFilter AND {DISTRICT} GROUP BY device_id)",
            ("bins_over",),
            doc=f"bins whose latest fill_ratio >= {fill} (the bin_overflow threshold)",
        ),
        Kpi(
            "bin_fill",
            "Mean bin fill",
            "percentunit",
            f"SELECT mean(fill_ratio) AS fill FROM bin WHERE $timeFilter AND {DISTRICT} "
            "GROUP BY time($__interval), district fill(none)",
            ("fill",),
            fmt="time_series",
            tags=("district",),
        ),
        Kpi(
            "vehicles_moving",
            "Vehicles on the move",
            "short",
            "SELECT count(s) AS vehicles FROM (SELECT max(speed_kmh) AS s FROM vehicle WHERE "
            f"$timeFilter AND {DISTRICT} GROUP BY time(5m), device_id) WHERE $timeFilter AND "
            "s > 3 GROUP BY time(5m) fill(0)",
            ("vehicles",),
            fmt="time_series",
            doc="vehicles with a fix faster than 3 km/h in each 5 min",
        ),
        Kpi(
            "trips",
            "Mileage, operating hours and route coverage",
            "km",
            "SELECT last(mileage_km) AS mileage_km, last(operating_h) AS operating_h, "
            f"last(route_coverage) AS route_coverage FROM {trips} WHERE $timeFilter "
            "GROUP BY vehicle, kind, day",
            ("mileage_km", "operating_h", "route_coverage"),
            doc="per vehicle and local day, from the processors' trip summaries "
            "(written once the day is over)",
            tags=("vehicle", "kind", "day"),
        ),
        Kpi(
            "dust_hours_over",
            "Hours over the PM10 limit",
            "h",
            f"SELECT sum(over) AS hours_over FROM (SELECT {indicator('mean(pm10_ugm3)', pm10)} "
            f"AS over FROM dust WHERE $timeFilter AND {DISTRICT} GROUP BY time(1h), site_id) "
            f"WHERE $timeFilter GROUP BY time(1d), site_id fill(none) tz('{tz}')",
            ("hours_over",),
            fmt="table",
            doc=f"hours whose mean PM10 > {pm10} µg/m³, per site and local day",
            tags=("site_id",),
        ),
        Kpi(
            "dust_now",
            "PM10 / PM2.5 / noise now",
            "short",
            "SELECT mean(pm10_ugm3) AS pm10_ugm3, mean(pm25_ugm3) AS pm25_ugm3, "
            "10 * log10(mean(noise_energy)) AS noise_dba FROM dust "
            f"WHERE $timeFilter AND {DISTRICT} GROUP BY time(15m), site_id fill(none) "
            "ORDER BY time DESC LIMIT 1",
            ("pm10_ugm3", "pm25_ugm3", "noise_dba"),
            doc="each site's last 15-min mean (noise: energetic mean, Leq)",
            tags=("site_id",),
        ),
        Kpi(
            "pipeline_rates",
            "Readings per second",
            "reqps",
            f"SELECT mean(in_per_s) AS in_per_s, mean(written_per_s) AS written_per_s FROM {pipe} "
            "WHERE $timeFilter GROUP BY time($__interval) fill(none)",
            ("in_per_s", "written_per_s"),
            fmt="time_series",
        ),
        Kpi(
            "pipeline_deadletters",
            "Dead letters per second by reason",
            "reqps",
            f"SELECT mean(per_s) AS per_s FROM {pipe}_deadletter WHERE $timeFilter "
            "GROUP BY time($__interval), reason fill(none)",
            ("per_s",),
            fmt="time_series",
            tags=("reason",),
        ),
        Kpi(
            "pipeline_lag",
            "Kafka consumer lag",
            "short",
            f"SELECT max(lag) AS lag FROM {pipe} WHERE $timeFilter "
            "GROUP BY time($__interval) fill(none)",
            ("lag",),
            fmt="time_series",
        ),
        Kpi(
            "pipeline_write_latency",
            "InfluxDB write latency",
            "ms",
            f"SELECT mean(write_ms) AS write_ms FROM {pipe} WHERE $timeFilter "
            "GROUP BY time($__interval) fill(none)",
            ("write_ms",),
            fmt="time_series",
            doc="mean duration of the processors' InfluxDB batch writes over each scrape period",
        ),
        Kpi(
            "pipeline_broker",
            "MQTT broker: messages dropped and stored",
            "short",
            f"SELECT max(broker_dropped) AS broker_dropped, max(broker_stored) AS broker_stored "
            f"FROM {pipe} WHERE $timeFilter GROUP BY time($__interval) fill(none)",
            ("broker_dropped", "broker_stored"),
            fmt="time_series",
            doc="Mosquitto's $SYS counters via the gateway: messages acknowledged to devices "
            "and then dropped for a subscriber over its queue limit (since the broker "
            "started; any rise is lost readings), and messages the broker holds",
        ),
        Kpi(
            "workorder_closure",
            "Work-order closure rate (city)",
            "percentunit",
            "SELECT last(closure_rate) AS closure_rate FROM "
            f'"{s.influx.kpi_retention_policy}"."workorders" '
            "WHERE $timeFilter AND district = 'all' AND family = 'all'",
            ("closure_rate",),
            doc="resolved or closed / created, over the notifier's KPI window "
            "(notifier.kpi_window_s, 30 days); the bureaus report 96-97 %",
        ),
        Kpi(
            "workorders",
            "Work orders by district and family",
            "short",
            "SELECT last(created) AS created, last(active) AS active, "
            "last(closure_rate) AS closure_rate, last(ack_s_median) AS ack_s_median, "
            "last(resolve_s_median) AS resolve_s_median FROM "
            f'"{s.influx.kpi_retention_policy}"."workorders" '
            f"WHERE $timeFilter AND {DISTRICT} GROUP BY district, family",
            ("created", "active", "closure_rate"),
            doc="written by `citywatch notify` every notifier.kpi_interval_s (notifier/kpis.py); "
            "times to acknowledge / resolve are medians in seconds from creation",
            tags=("district", "family"),
        ),
    ]
    return {k.key: k for k in out}


def regex_value(values: list[str]) -> str:
    """How Grafana formats a multi-value variable inside ``=~ /^...$/``: ``(a|b)``."""
    return "(" + "|".join(re.escape(v) for v in values) + ")"


def expand(
    query: str,
    *,
    start: str,
    end: str,
    variables: dict[str, list[str]] | None = None,
    interval: str = "5m",
) -> str:
    """Expand Grafana's macros and variables as Grafana's InfluxQL datasource does.

    ``start``/``end`` are RFC 3339 times; ``variables`` maps a name to its selected values.
    """
    q = query.replace("$timeFilter", f"time >= '{start}' AND time <= '{end}'")
    q = q.replace("$__interval", interval)
    for name, values in sorted((variables or {}).items(), key=lambda kv: -len(kv[0])):
        q = q.replace(f"${name}", regex_value(values))
    return q
