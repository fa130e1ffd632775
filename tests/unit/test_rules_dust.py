"""Dust and noise rules on hand-made series: site means, spikes, duplicates, late readings,
night windows, Leq, stuck and drifting sensors."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rulefeed import feed

from citywatch.citymodel import CityModel
from processors.alerts import AlertManager, AlertPolicy
from processors.config import DustRulesConfig, RulesConfig
from processors.rules.base import Condition
from processors.rules.dust.dust_exceedance import DustExceedance
from processors.rules.dust.dust_exceedance import build as build_dust_exceedance
from processors.rules.dust.night_noise import NightNoise
from processors.rules.dust.night_noise import build as build_night_noise
from processors.rules.dust.sensor_drift import SensorDrift
from processors.rules.dust.stuck_sensor import StuckSensor
from processors.rules.dust.window import MinuteWindow
from processors.rules.solar import LocalClock
from processors.rules.streak import NS

MIN = 60 * NS
T_DAY = 1_717_207_200 * NS  # 2024-06-01 10:00 local (UTC+8)
T_NIGHT = 1_717_254_000 * NS  # 2024-06-01 23:00 local


def d(
    dev: str, m: float, t0: int = T_DAY, site: str | None = "site-1", **kw: Any
) -> dict[str, Any]:
    rec = {"device_id": dev, "family": "dust", "district": "north", "ts": t0 + int(m * MIN), **kw}
    if site is not None:
        rec["site_id"] = site
    return rec


def raised(conds: list[Condition]) -> list[tuple[str, str]]:
    am = AlertManager(AlertPolicy(clear_after_s=600))
    return [(e.kind, e.target) for c in conds for e in am.apply(c) if e.state == "raised"]


def pm(
    minutes: range, value: Any, sensors: tuple[str, ...] = ("a", "b"), **kw: Any
) -> list[dict[str, Any]]:
    return [
        d(s, m, pm10_ugm3=float(value(m) if callable(value) else value), **kw)
        for m in minutes
        for s in sensors
    ]


# --- windows ------------------------------------------------------------------------------


def test_minute_window_matches_brute_force_with_late_values() -> None:
    rng = random.Random(3)
    w = MinuteWindow(60, 15)
    kept: list[tuple[int, float]] = []
    head = 0
    for _ in range(3000):
        m = head + rng.randint(1, 3) if rng.random() < 0.5 else head - rng.randint(0, 70)
        v = rng.uniform(0, 100)
        if w.add(m, v):
            kept.append((m, v))
        head = max(head, m)
        long = [x for t, x in kept if head - 60 < t <= head]
        short = [x for t, x in kept if head - 15 < t <= head]
        assert w.cnt_long == len(long) and w.cnt_short == len(short)
        assert w.sum_long == pytest.approx(sum(long)) and w.sum_short == pytest.approx(sum(short))


# --- dust_exceedance ----------------------------------------------------------------------


def test_site_mean_above_the_limit() -> None:
    rule = DustExceedance()
    conds = feed(rule, pm(range(0, 10), 80.0) + pm(range(10, 40), 240.0))
    on = [c for c in conds if c.active]
    assert on and (on[0].kind, on[0].target, on[0].target_type, on[0].severity) == (
        "dust_exceedance",
        "site-1",
        "site",
        "major",
    )
    # 15-min mean passes 150 once 8 of its 15 minutes are at 240.
    assert T_DAY + 15 * MIN <= on[0].ts <= T_DAY + 18 * MIN
    conds = feed(rule, pm(range(40, 100), 40.0))
    off = [c for c in conds if not c.active]
    # Clears once the 1-h mean is below 90 % of the limit too, within the hour.
    assert off and T_DAY + 45 * MIN <= off[0].ts <= T_DAY + 100 * MIN
    assert not [c for c in conds if c.active and c.ts > off[0].ts]


def _first_clear(conds: list[Condition]) -> int | None:
    off = [c.ts for c in conds if not c.active]
    return off[0] if off else None


def test_a_site_window_from_a_checkpoint_clears_when_the_uninterrupted_one_does() -> None:
    recs = pm(range(0, 10), 80.0) + pm(range(10, 40), 240.0) + pm(range(40, 100), 40.0)
    upto = [r for r in recs if r["ts"] < T_DAY + 45 * MIN]  # killed 45 minutes in
    whole = _first_clear(feed(DustExceedance(), recs))
    before = DustExceedance()
    feed(before, upto)
    restarted = DustExceedance()
    for sensor in ("b", "a"):  # each sensor's record carries its site: the newest is kept
        state = orjson.loads(orjson.dumps(before.learnt(sensor)))
        restarted.relearn(sensor, state)
    replay = [r for r in recs if r["ts"] >= T_DAY + 30 * MIN]  # from 15 minutes before
    assert _first_clear(feed(restarted, replay)) == whole
    # Without: a "1-h" mean of the replay's 15 minutes ended the episode 17 minutes early.
    fresh = _first_clear(feed(DustExceedance(), replay))
    assert whole is not None and fresh is not None and whole - fresh >= 15 * MIN
    assert restarted.forget({"a", "b"}) == {"site-1"} and not restarted.sites


def test_a_damaged_site_window_is_refused() -> None:
    w = MinuteWindow(60, 15)
    for damaged in ([5, [[9, 2.0, 1]]], ["x", []], [100, [[99.5, 2.0, 1]]]):
        with pytest.raises(ValueError):
            w.load(damaged)
    good = DustExceedance()
    feed(good, pm(range(0, 6), 80.0))
    state = good.learnt("a")
    with pytest.raises(ValueError):
        DustExceedance().relearn("a", [*state[:3], "on", state[4]])


def test_a_spike_is_not_an_exceedance() -> None:
    recs = pm(range(0, 30), 50.0)
    recs[20]["pm10_ugm3"] = 1000.0
    assert feed(DustExceedance(), recs) == []


def test_too_few_samples() -> None:
    assert feed(DustExceedance(), pm(range(0, 2), 400.0)) == []


def test_duplicates_are_not_counted_twice() -> None:
    recs = pm(range(0, 14), 100.0, sensors=("a",))
    high = d("a", 14, pm10_ugm3=400.0)
    recs += [high] + [dict(high) for _ in range(5)]
    # Counted once: (14 * 100 + 400) / 15 = 120; five duplicates would make it 179.
    assert feed(DustExceedance(), recs) == []


def test_late_readings_count_in_their_minute() -> None:
    rule = DustExceedance()
    assert feed(rule, pm(range(0, 15), 100.0, sensors=("a",))) == []
    late = pm(range(5, 15), 300.0, sensors=("b",))  # delivered after a's minute 14
    assert raised(feed(rule, late)) == [("dust_exceedance", "site-1")]


def test_one_hour_mean_and_site_limits() -> None:
    cfg = DustRulesConfig(pm10_limit_1h_ugm3=100.0)
    conds = feed(DustExceedance(cfg), pm(range(0, 60), 120.0))
    assert raised(conds) == [("dust_exceedance", "site-1")]
    assert feed(DustExceedance(), pm(range(0, 60), 120.0)) == []
    strict = DustExceedance(site_limits={"site-1": 100.0})
    assert raised(feed(strict, pm(range(0, 20), 120.0))) == [("dust_exceedance", "site-1")]
    override = DustExceedance(
        DustRulesConfig(site_limits_ugm3={"site-1": 200.0}), site_limits={"site-1": 100.0}
    )
    assert feed(override, pm(range(0, 20), 180.0)) == []


def test_sensors_without_site_are_mapped_by_the_model_or_skipped() -> None:
    recs = [d("a", m, site=None, pm10_ugm3=300.0) for m in range(20)]
    assert feed(DustExceedance(), recs) == []
    rule = DustExceedance(sensor_site={"a": "site-9"})
    assert raised(feed(rule, recs)) == [("dust_exceedance", "site-9")]


# --- night_noise --------------------------------------------------------------------------


def noise(minutes: range, value: Any, t0: int = T_NIGHT) -> list[dict[str, Any]]:
    return [
        d(s, m, t0=t0, noise_dba=float(value(m) if callable(value) else value))
        for m in minutes
        for s in ("a", "b")
    ]


def clock() -> LocalClock:
    return LocalClock("Asia/Shanghai")


def test_night_noise_at_night_only() -> None:
    conds = feed(NightNoise(clock()), noise(range(0, 20), 60.0))
    on = [c for c in conds if c.active]
    assert on and (on[0].kind, on[0].target, on[0].target_type) == ("night_noise", "site-1", "site")
    assert feed(NightNoise(clock()), noise(range(0, 20), 60.0, t0=T_DAY)) == []


def test_a_loud_evening_does_not_spill_into_the_night() -> None:
    evening = noise(range(-15, 0), 75.0, t0=T_NIGHT - 60 * MIN)  # 21:45-21:59
    night = noise(range(0, 20), 45.0, t0=T_NIGHT - 60 * MIN)  # 22:00-22:19
    assert feed(NightNoise(clock()), evening + night) == []


def test_leq_is_energetic() -> None:
    loud_quiet = noise(range(0, 20), lambda m: 64.0 if m % 2 else 40.0)
    assert raised(feed(NightNoise(clock()), loud_quiet)) == [("night_noise", "site-1")]
    arith = NightNoise(clock(), DustRulesConfig(noise_leq=False))
    assert feed(arith, loud_quiet) == []  # arithmetic mean 52 dBA


def test_night_noise_clears_at_dawn() -> None:
    # 05:40 .. 06:09 local, loud throughout.
    t0 = T_NIGHT + 6 * 60 * MIN + 40 * MIN
    conds = feed(NightNoise(clock()), noise(range(0, 30), 62.0, t0=t0))
    first_off = next(c for c in conds if not c.active)
    assert first_off.ts == t0 + 20 * MIN and first_off.message == "night over"


def test_site_night_hours_and_limits_from_arguments() -> None:
    rule = NightNoise(
        clock(), site_limits={"site-1": 65.0}, site_nights={"site-1": ("23:30", "06:00")}
    )
    assert feed(rule, noise(range(0, 20), 60.0)) == []  # 23:00: not night here; 60 < 65 anyway
    rule = NightNoise(clock(), site_nights={"site-1": ("23:30", "06:00")})
    assert feed(rule, noise(range(0, 25), 60.0)) == []  # 23:00-23:24: not night here yet
    assert raised(feed(rule, noise(range(25, 45), 60.0))) == [("night_noise", "site-1")]


# --- stuck_sensor -------------------------------------------------------------------------


def test_stuck_after_ten_identical_values() -> None:
    rule = StuckSensor()
    recs = [d("a", m, pm10_ugm3=v) for m, v in enumerate([40.0, 41.5] + [37.2] * 9)]
    assert feed(rule, recs) == []
    conds = feed(rule, [d("a", 11, pm10_ugm3=37.2)])
    assert [(c.kind, c.target, c.active) for c in conds] == [("stuck_sensor", "a", True)]
    conds = feed(rule, [d("a", 12, pm10_ugm3=38.0)])
    assert [c.active for c in conds] == [False]


def test_duplicates_are_not_repeats() -> None:
    r = d("a", 0, pm10_ugm3=37.2)
    assert feed(StuckSensor(), [dict(r) for _ in range(12)]) == []


# --- sensor_drift -------------------------------------------------------------------------

SENSORS = {
    "s1-a": "site-1",
    "s1-b": "site-1",
    "s2-a": "site-2",
    "s2-b": "site-2",
    "s3-a": "site-3",
    "s3-b": "site-3",
}


def district(
    minutes: range, override: dict[str, Any], sensors: dict[str, str] = SENSORS
) -> list[dict[str, Any]]:
    recs = []
    for m in minutes:
        for i, (dev, site) in enumerate(sensors.items()):
            v = 40.0 + ((m * 5 + i * 3) % 7) - 3.0  # noisy around 40
            f = override.get(dev)
            if f is not None:
                v = f(m, v)
            recs.append(d(dev, m + i / 10, site=site, pm10_ugm3=v))
    return recs


def test_drift_sustained_30_minutes() -> None:
    rule = SensorDrift()
    recs = district(range(0, 60), {"s1-a": lambda m, v: v + 60.0 if m >= 10 else v})
    conds = feed(rule, recs)
    on = [c for c in conds if c.active]
    assert {c.target for c in on} == {"s1-a"}
    assert on[0].kind == "sensor_drift" and on[0].target_type == "device"
    assert T_DAY + 40 * MIN <= on[0].ts <= T_DAY + 42 * MIN


def test_short_excursion_is_not_drift() -> None:
    recs = district(range(0, 60), {"s1-a": lambda m, v: v + 60.0 if 10 <= m < 35 else v})
    assert [c for c in feed(SensorDrift(), recs) if c.active] == []


def test_whole_site_high_is_site_dust_not_drift() -> None:
    high = {"s1-a": lambda m, v: v + 200.0, "s1-b": lambda m, v: v + 190.0}
    assert [c for c in feed(SensorDrift(), district(range(0, 60), high)) if c.active] == []


def test_two_drifting_sensors_of_a_four_sensor_site_are_both_drift() -> None:
    sensors = {f"s1-{k}": "site-1" for k in "abcd"} | {
        "s2-a": "site-2",
        "s2-b": "site-2",
        "s3-a": "site-3",
        "s3-b": "site-3",
    }
    up = {"s1-a": lambda m, v: v + 70.0, "s1-b": lambda m, v: v + 65.0}
    on = {c.target for c in feed(SensorDrift(), district(range(0, 45), up, sensors)) if c.active}
    assert on == {"s1-a", "s1-b"}
    three = up | {"s1-c": lambda m, v: v + 60.0}  # three of four: the site, not its sensors
    assert not [c for c in feed(SensorDrift(), district(range(0, 45), three, sensors)) if c.active]


def test_drift_on_a_site_that_reads_a_little_high_anyway() -> None:
    # site-1 sits 9 µg/m³ above the rest; its s1-a drifts by 70 on top.
    up = {"s1-b": lambda m, v: v + 9.0, "s1-a": lambda m, v: v + 9.0 + 70.0}
    on = {c.target for c in feed(SensorDrift(), district(range(0, 45), up)) if c.active}
    assert on == {"s1-a"}


def test_a_noisy_minute_does_not_restart_the_30_minutes() -> None:
    # Every 7th minute the drifting sensor happens to read in line.
    up = {"s1-a": lambda m, v: v if m % 7 == 3 else v + 60.0}
    on = [c for c in feed(SensorDrift(), district(range(0, 45), up)) if c.active]
    assert on and on[0].target == "s1-a"
    assert T_DAY + 30 * MIN <= on[0].ts <= T_DAY + 32 * MIN


def test_drift_ends_after_five_minutes_back_in_line_and_is_not_raised_again() -> None:
    up = {"s1-a": lambda m, v: v + 60.0 if 5 <= m < 50 else v}
    conds = feed(SensorDrift(), district(range(0, 90), up))
    assert [e for e in raised(conds)] == [("sensor_drift", "s1-a")]
    first_off = next(c for c in conds if not c.active)
    assert T_DAY + 55 * MIN <= first_off.ts <= T_DAY + 56 * MIN


def test_stuck_sensors_are_left_to_stuck_sensor() -> None:
    recs = district(range(0, 60), {"s2-a": lambda m, v: 120.0})
    assert [c for c in feed(SensorDrift(), recs) if c.active] == []


def test_too_few_peers() -> None:
    recs = [
        r
        for r in district(range(0, 60), {"s1-a": lambda m, v: v + 60.0})
        if r["device_id"] in ("s1-a", "s2-a", "s3-a")
    ]
    assert feed(SensorDrift(), recs) == []


# --- wiring -------------------------------------------------------------------------------


def test_factories_take_limits_and_sensors_from_the_city_model() -> None:
    city = CityModel.generate(seed=1, scale=1)
    site = next(iter(city.sites.values()))
    rule = build_dust_exceedance(RulesConfig(), city)
    assert isinstance(rule, DustExceedance)
    assert rule.limits[site.id] == site.pm10_limit_ugm3
    assert rule.sensor_site[site.sensor_ids[0]] == site.id
    nn = build_night_noise(RulesConfig(), city)
    assert isinstance(nn, NightNoise) and nn.limits[site.id] == site.night_noise_limit_dba


@given(st.lists(st.floats(0, 500), min_size=2, max_size=40), st.data())
def test_leave_one_out_median_matches_the_median_of_the_others(
    xs: list[float], data: st.DataObject
) -> None:
    from processors.rules.dust.sensor_drift import _median, _median_without

    i = data.draw(st.integers(0, len(xs) - 1))
    others = xs[:i] + xs[i + 1 :]
    assert _median_without(sorted(xs), xs[i]) == _median(others)
