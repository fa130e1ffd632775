"""Bin rules on hand-made series: overflow and its hysteresis, service deadline, fast fill,
fire (absolute and over baseline), knocked over, ordering."""

from __future__ import annotations

from typing import Any

from rulefeed import feed

from processors.config import BinRulesConfig
from processors.rules.base import Condition
from processors.rules.bin.bin_fast_fill import BinFastFill
from processors.rules.bin.bin_fire import BinFire
from processors.rules.bin.bin_knocked_over import BinKnockedOver
from processors.rules.bin.bin_overflow import BinOverflow
from processors.rules.bin.bin_overflow_unserved import BinOverflowUnserved
from processors.rules.streak import NS

Q = 900 * NS  # the bin reporting interval
T0 = 1_717_200_000 * NS


def b(k: int, **fields: Any) -> dict[str, Any]:
    return {"device_id": "bin-1", "family": "bin", "district": "north", "ts": T0 + k * Q, **fields}


def states(conds: list[Condition]) -> list[tuple[str, bool]]:
    return [(c.kind, c.active) for c in conds]


def test_overflow_at_threshold_not_below() -> None:
    assert feed(BinOverflow(), [b(k, fill_ratio=f) for k, f in enumerate([0.5, 0.8, 0.89])]) == []
    conds = feed(BinOverflow(), [b(0, fill_ratio=0.5), b(1, fill_ratio=0.9)])
    assert states(conds) == [("bin_overflow", True)]
    assert conds[0].severity == "warning" and conds[0].target_type == "device"


def test_overflow_clears_on_emptied_event() -> None:
    conds = feed(BinOverflow(), [b(0, fill_ratio=0.95), b(1, emptied=True)])
    assert states(conds) == [("bin_overflow", True), ("bin_overflow", False)]
    assert conds[1].message == "emptied"


def test_overflow_hysteresis() -> None:
    rule = BinOverflow()
    conds = feed(rule, [b(0, fill_ratio=0.92), b(1, fill_ratio=0.86), b(2, fill_ratio=0.88)])
    assert [c.active for c in conds] == [True, True, True]  # re-sent while still overflowing
    conds = feed(rule, [b(3, fill_ratio=0.3)])
    assert states(conds) == [("bin_overflow", False)]


def test_overflow_ignores_late_and_duplicate_readings() -> None:
    rule = BinOverflow()
    assert feed(rule, [b(2, fill_ratio=0.4), b(1, fill_ratio=0.95), b(2, fill_ratio=0.95)]) == []


def test_unserved_after_12_hours_and_cleared_by_emptying() -> None:
    rule = BinOverflowUnserved()
    recs = [b(k, fill_ratio=0.95) for k in range(48)]  # 47 x 15 min = 11.75 h
    assert feed(rule, recs) == []
    conds = feed(rule, [b(48, fill_ratio=0.96)])  # exactly 12 h after the overflow began
    assert states(conds) == [("bin_overflow_unserved", True)]
    assert conds[0].severity == "major"
    conds = feed(rule, [b(49, emptied=True, fill_ratio=0.05)])
    assert states(conds) == [("bin_overflow_unserved", False)]


def test_unserved_deadline_restarts_with_each_overflow() -> None:
    rule = BinOverflowUnserved(BinRulesConfig(unserved_after_h=1.0))
    recs = [
        b(0, fill_ratio=0.95),
        b(3, fill_ratio=0.1),
        b(4, fill_ratio=0.95),
        b(7, fill_ratio=0.95),
    ]
    assert feed(rule, recs) == []  # 45 min since the second overflow began
    assert states(feed(rule, [b(8, fill_ratio=0.97)])) == [("bin_overflow_unserved", True)]


def fills(start: float, rate_per_h: float, n: int, k0: int = 0) -> list[dict[str, Any]]:
    return [b(k0 + k, fill_ratio=min(1.0, start + rate_per_h * k / 4)) for k in range(n)]


def test_fast_fill_against_the_bins_usual_rate() -> None:
    rule = BinFastFill()
    assert feed(rule, fills(0.05, 0.03, 24)) == []  # 6 h at its usual 3 %/h
    conds = feed(rule, fills(0.2, 0.5, 6, k0=24))  # a market day: 50 %/h
    assert states(conds)[:1] == [("bin_fast_fill", True)]
    assert conds[0].severity == "info"


def test_a_bin_that_always_fills_fast_is_not_flagged() -> None:
    rule = BinFastFill()
    recs = []
    for day in range(3):
        recs += fills(0.0, 0.3, 12, k0=day * 12)
        recs.append(b(day * 12 + 11, emptied=True, fill_ratio=0.0))
    assert [c for c in feed(rule, recs) if c.active] == []


def test_fire_absolute_and_over_baseline() -> None:
    rule = BinFire()
    base = [b(k, temperature_c=20.0 + (k % 3) * 0.5) for k in range(8)]
    assert feed(rule, base) == []
    conds = feed(rule, [b(8, temperature_c=47.0)])  # +26.5 over ~20.5
    assert states(conds) == [("bin_fire", True)] and conds[0].severity == "critical"
    conds = feed(rule, [b(9, temperature_c=21.0)])
    assert states(conds) == [("bin_fire", False)]
    conds = feed(BinFire(), [b(0, temperature_c=65.0)])  # no baseline needed
    assert states(conds) == [("bin_fire", True)]


def test_warm_day_is_not_a_fire() -> None:
    rule = BinFire()
    # Ambient climbs 20 -> 40 C over a day: the baseline follows, no alert.
    recs = [b(k, temperature_c=20.0 + 20.0 * k / 48) for k in range(48)]
    assert feed(rule, recs) == []
    assert feed(BinFire(), [b(k, temperature_c=42.0) for k in range(3)]) == []


def test_knocked_over_with_hysteresis() -> None:
    rule = BinKnockedOver()
    assert feed(rule, [b(0, tilt_deg=5.0), b(1, tilt_deg=44.0)]) == []
    conds = feed(rule, [b(2, tilt_deg=70.0), b(3, tilt_deg=40.0), b(4, tilt_deg=3.0)])
    assert [c.active for c in conds] == [True, True, False]
