"""KPI queries: macro/variable expansion, thresholds from the rules file, monitor parsing."""

from __future__ import annotations

from citywatch.monitor import Monitor, scrape_text
from citywatch.settings import Settings
from dashboards.kpis import expand, indicator, kpis, regex_value
from processors.config import RulesConfig


def test_expand_replaces_every_macro_and_variable() -> None:
    q = expand(
        "SELECT x FROM m WHERE $timeFilter AND district =~ /^$district$/ "
        "GROUP BY time($__interval)",
        start="2026-01-01T00:00:00Z",
        end="2026-01-02T00:00:00Z",
        variables={"district": ["central", "north.x"]},
        interval="10m",
    )
    assert "time >= '2026-01-01T00:00:00Z' AND time <= '2026-01-02T00:00:00Z'" in q
    assert r"/^(central|north\.x)$/" in q and "time(10m)" in q and "$" not in q.replace("$/", "")


def test_regex_value_escapes() -> None:
    assert regex_value(["a+b"]) == r"(a\+b)"


def test_thresholds_follow_the_rules_file() -> None:
    rules = RulesConfig()
    rules.bin.overflow_fill = 0.75
    rules.dust.pm10_limit_ugm3 = 99.0
    k = kpis(Settings(), rules)
    assert "0.749999" in k["bins_over"].query
    assert indicator("mean(pm10_ugm3)", 99.0) in k["dust_hours_over"].query


def test_every_kpi_names_its_columns_in_its_query() -> None:
    for k in kpis(Settings()).values():
        for col in k.columns:
            assert col in k.query, (k.key, col)


def test_monitor_rates_and_deadletter_reasons() -> None:
    m = scrape_text(
        "# TYPE citywatch_gateway_deadlettered counter\n"
        'citywatch_gateway_deadlettered_total{reason="malformed"} 4.0\n'
        'citywatch_gateway_deadlettered_total{reason="future"} 1.0\n'
    )
    assert m[("citywatch_gateway_deadlettered_total", "malformed")] == 4.0
    mon = Monitor(Settings())
    assert mon.rate("in", 100.0, 10.0) is None
    assert mon.rate("in", 160.0, 12.0) == 30.0
    assert mon.rate("in", 5.0, 13.0) is None  # counter reset: a restarted process


async def test_monitor_writes_the_brokers_drop_and_store_counters() -> None:
    s = Settings()
    gw = scrape_text(
        "citywatch_mqtt_broker_dropped 12.0\n"
        "citywatch_mqtt_broker_stored 3456.0\n"
        "citywatch_gateway_readings_forwarded_total 100.0\n"
    )

    class Fake(Monitor):
        async def scrape(self, client: object, port: int) -> dict[tuple[str, str], float]:
            return gw if port == s.gateway.metrics_port else {}

        async def lag(self) -> int | None:
            return None

    lines = await Fake(s).sample(None)  # type: ignore[arg-type]
    assert lines and lines[0].startswith(s.grafana.monitor_measurement + " ")
    assert "broker_dropped=12i" in lines[0] and "broker_stored=3456i" in lines[0]
