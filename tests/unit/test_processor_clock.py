"""The processor's per-partition event-time progress (processors.clock.progress)."""

from __future__ import annotations

from processors.clock import progress

S = 1_000_000_000


def test_front_ignores_a_device_whose_clock_runs_ahead() -> None:
    recs = [{"ts": i * S} for i in range(1000)] + [{"ts": 10**6 * S}] * 3
    low, front = progress(recs)
    assert low == 250 * S
    # The three readings from the future are beyond the newest 1 % (10 left out).
    assert 985 * S <= front < 1000 * S


def test_front_of_a_large_final_batch_is_near_its_end() -> None:
    # 20,000 readings over 20 minutes: the quartile is 15 minutes short of the end; a
    # partition that goes quiet after this batch must not keep that clock.
    recs = [{"ts": i * S * 60 // 1000} for i in range(20_000)]
    low, front = progress(recs)
    end = recs[-1]["ts"]
    assert end - low > 14 * 60 * S
    assert end - front < 15 * S


def test_tiny_batches_fall_back_to_the_oldest_reading() -> None:
    assert progress([]) == (0, 0)
    assert progress([{"ts": 5}]) == (5, 5)
    # One reading from the future among two cannot move either clock.
    assert progress([{"ts": 5}, {"ts": 10**12}]) == (5, 5)
