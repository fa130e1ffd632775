"""Detector checkpoints: a detector's state survives a trip through JSON exactly, a damaged one
is refused, and an engine restored from a checkpoint scores what the uninterrupted one does."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson
import pytest

from citywatch.settings import Settings
from processors.checkpoints import Checkpoints, decode, encode
from processors.config import RulesConfig
from processors.detectors.base import state_bytes
from processors.detectors.registry import DETECTORS, create
from processors.engine import Engine

S = 1_000_000_000


def _series(t: int, step: float) -> tuple[float, float]:
    spike = 40.0 if t == 3500 else 0.0
    return t * step, 20 + 5 * math.sin(t / 20) + t * 7919 % 13 / 13 + spike


def _json(state: Any) -> Any:
    return orjson.loads(orjson.dumps(state))


@pytest.mark.parametrize("name", sorted(DETECTORS))
@pytest.mark.parametrize("step", [60.0, 300.0, 8 * 3600.0])
def test_restored_detector_scores_what_the_original_does(name: str, step: float) -> None:
    det = create(name)
    for t in range(3000):
        det.update(*_series(t, step))
    state = det.get_state()
    assert state is not None
    twin = create(name)
    twin.set_state(_json(state))
    assert state_bytes(twin) <= state_bytes(det)  # exact buffers: a restore costs no memory
    ahead = [det.update(*_series(t, step)) for t in range(3000, 4000)]
    assert [twin.update(*_series(t, step)) for t in range(3000, 4000)] == ahead
    if name != "passthrough":
        assert max(ahead) > 0.5  # the spike at 3,500 is seen, so the comparison means something


def test_restored_sentinel_keeps_its_weekly_routine() -> None:
    """The routine slots live in the state: after a restore, next week's repeat is no alert."""
    det = create("sentinel")
    week = 7 * 86_400.0
    for t in range(0, int(2 * week), 300):
        det.update(float(t), 10.0 + (t // 300) % 7 * 0.1)
    for t in range(int(2 * week), int(2 * week) + 1800, 300):
        det.update(float(t), 60.0)  # an event, two weeks in
    twin = create("sentinel")
    twin.set_state(_json(det.get_state()))
    scores = []
    for d in (det, twin):
        got = []
        for t in range(int(2 * week) + 1800, int(3 * week) + 1800, 300):
            got.append(d.update(float(t), 60.0 if t >= 3 * week else 10.0 + (t // 300) % 7 * 0.1))
        scores.append(got)
    assert scores[0] == scores[1]


def _sentinel_state() -> list[Any]:
    det = create("sentinel")
    for t in range(300):
        det.update(*_series(t, 300.0))
    state = det.get_state()
    assert state is not None
    return _json(state)


def _damage(path: tuple[int, ...], value: Any) -> list[Any]:
    state = _sentinel_state()
    node = state
    for i in path[:-1]:
        node = node[i]
    node[path[-1]] = value
    return state


@pytest.mark.parametrize(
    "state",
    [
        _damage((0,), -1),  # a negative count
        _damage((2,), 10_000),  # a refractory longer than configured
        _damage((3,), "AAAA"),  # too few state numbers
        _damage((4, 3), "AAAA"),  # window tags that do not match the window
        _damage((4, 2), "AACAQAAAgD8="),  # window values out of order (2.0, 1.0)
        _damage((5,), ["profile", [""]]),  # a profile without bins
        _damage((5,), ["season", []]),
        _damage((4, 1), float("nan")),  # a window with no offset
        [1, 2],
        "not a state",
    ],
)
def test_damaged_sentinel_state_is_refused(state: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        create("sentinel").set_state(state)


def test_a_window_emptier_than_the_count_is_refused() -> None:
    """Past 8 points sentinel reads its window's median: an empty one would crash it."""
    state = _sentinel_state()
    state[4] = create("sentinel").get_state()[4]  # type: ignore[index]
    with pytest.raises(ValueError, match="fewer window values"):
        create("sentinel").set_state(state)


def test_checkpoint_record_round_trip_and_refusals() -> None:
    blob = encode("sentinel", 5 * S, {"pm10_ugm3": [1, 2]})
    assert decode(blob, "sentinel") == (5 * S, {"pm10_ugm3": [1, 2]}, {})
    assert decode(blob, "ewma") is None  # another detector's state, and nothing else
    learnt = {"bin_fire": [18.0, 9]}
    both = encode("sentinel", 5 * S, {"pm10_ugm3": [1, 2]}, learnt)
    assert decode(both, "ewma") == (5 * S, {}, learnt)  # the rules' learning still counts
    assert decode(both.replace(b'"rules":{', b'"rules":[{'), "sentinel") is None
    assert decode(None, "sentinel") is None  # a tombstone
    assert decode(b"{", "sentinel") is None
    assert decode(blob.replace(b'"v":1', b'"v":99'), "sentinel") is None


def _dust(n: int, start: int = 0, spike_at: int = -1) -> list[dict[str, Any]]:
    out = []
    for k in range(start, start + n):
        for d in range(3):
            ts = (1_700_000_000 + k * 300) * S + d
            value = 30 + 8 * math.sin(k / 15 + d) + (k * 7919 + d) % 11 / 5
            out.append(
                {
                    "device_id": f"dust-{d}",
                    "family": "dust",
                    "district": "n",
                    "ts": ts,
                    "received_at": ts,
                    "late": False,
                    "seq": k,
                    "pm10_ugm3": value + (200.0 if k == spike_at else 0.0),
                    "noise_dba": 55.0 + d,
                }
            )
    return out


def _anomalies(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("anomalies")]


def test_engine_restored_from_a_checkpoint_scores_like_the_uninterrupted_one() -> None:
    cfg = RulesConfig()
    first, second = _dust(400), _dust(60, start=400, spike_at=420)
    whole = Engine(cfg)
    whole.process(first, tick=False)
    cut = Engine(cfg)
    cut.process(first, tick=False)
    # Checkpoint at the end of the first part, as processors.checkpoints writes it.
    last_ts = {r["device_id"]: r["ts"] for r in first}
    blobs = {
        dev: encode(cut.detector_name, last_ts[dev], {m: d.get_state() for m, d in dets})
        for dev, dets in cut.series_of(last_ts).items()
    }
    restarted = Engine(cfg)
    for dev, blob in blobs.items():
        snap = decode(blob, restarted.detector_name)
        assert snap is not None
        restarted.restore(dev, *snap)
    # The warm-up replay feeds readings the checkpoint already holds: they must not count twice.
    replayed = restarted.process(first[-90:], tick=False)
    assert restarted.restored == 6 and restarted.restore_refused == 0
    assert len(replayed.lines) == 90
    expected = _anomalies(whole.process(second, tick=False).lines)
    got = _anomalies(restarted.process(second, tick=False).lines)
    assert got == expected
    assert any("dust-0" in line and "metric=pm10_ugm3" in line for line in got)
    # Without the checkpoint the replay leaves the detectors in their warm-up: spike missed.
    fresh = Engine(cfg)
    fresh.process(first[-90:], tick=False)
    assert not _anomalies(fresh.process(second, tick=False).lines)


def test_a_checkpoint_replaces_a_stale_detector_and_a_refused_one_starts_afresh() -> None:
    eng = Engine(RulesConfig())
    eng.process(_dust(20), tick=False)
    stale = eng.detectors[("dust-0", "pm10_ugm3")]
    other = Engine(RulesConfig())
    other.process(_dust(150), tick=False)
    state = other.detectors[("dust-0", "pm10_ugm3")].get_state()
    eng.restore("dust-0", 10**19, {"pm10_ugm3": state, "noise_dba": "damaged"})
    eng.process(_dust(1, start=150), tick=False)
    restored = eng.detectors[("dust-0", "pm10_ugm3")]
    assert restored is not stale
    assert restored.get_state() == state  # the reading at 150 is before ts 1e19: skipped
    assert eng.restored == 1 and eng.restore_refused == 1
    assert not eng.pending


def test_rules_learning_is_restored_at_once_and_a_damaged_one_refused() -> None:
    eng = Engine(RulesConfig())
    assert set(eng.learners) == {
        "bin_fire",
        "bin_fast_fill",
        "bin_knocked_over",
        "bin_overflow",
        "bin_overflow_unserved",
        "device_silence",
        "dust_exceedance",
        "lamp_degradation",
        "night_noise",
        "sensor_drift",
        "trip_summary",
    }
    eng.restore("bin-1", 5 * S, {}, {"bin_fire": [18.0, 9], "bin_fast_fill": "damaged"})
    eng.restore("bin-2", 5 * S, {}, {"a_rule_switched_off": [1]})
    assert eng.learnt("bin-1") == {"bin_fire": [18.0, 9]}
    assert eng.learnt("bin-2") == {}
    assert (eng.restored, eng.restore_refused) == (1, 1)
    assert not eng.pending  # nothing waits for a detector


def test_checkpoints_not_taken_up_expire() -> None:
    eng = Engine(RulesConfig())
    eng.restore("bin-1", 5 * S, {"fill_ratio": []})
    eng.restore("bin-2", 50 * S, {"fill_ratio": []})
    eng.expire_pending(10 * S)
    assert list(eng.pending) == ["bin-2"]


class _Batch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    def append(self, *, key: bytes, value: bytes, timestamp: None) -> object | None:
        if len(self.records) == 2:  # full: the caller sends it and starts another
            return None
        self.records.append((key, value))
        return object()

    def record_count(self) -> int:
        return len(self.records)


class _Producer:
    """Stands in for aiokafka's producer: collects batches, or fails like Kafka away."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[tuple[int, list[tuple[bytes, bytes]]]] = []

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, partition: int) -> Any:
        if self.fail:
            raise ConnectionError("Kafka away")
        self.sent.append((partition, batch.records))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def _checkpoints(producer: _Producer) -> tuple[Checkpoints, Engine]:
    s = Settings()
    eng = Engine(RulesConfig())
    eng.process(_dust(150), tick=False)
    cp = Checkpoints(s, eng, "unit")
    cp.producer = producer  # type: ignore[assignment]
    cp.touched = {1: {"dust-0": 7, "dust-1": 8}, 4: {"dust-2": 9, "bin-without-detector": 1}}
    return cp, eng


async def test_save_sends_each_partitions_devices_in_batches_under_the_group_prefix() -> None:
    cp, eng = _checkpoints(_Producer())
    assert await cp.save() == 3
    sent = cp.producer.sent  # type: ignore[attr-defined]
    group = cp.prefix.encode()
    assert [(p, [k for k, _ in recs]) for p, recs in sent] == [
        (1, [group + b"dust-0", group + b"dust-1"]),
        (4, [group + b"dust-2"]),
    ]
    snap = decode(sent[0][1][0][1], eng.detector_name)
    assert snap is not None and snap[0] == 7 and set(snap[1]) == {"pm10_ugm3", "noise_dba"}
    assert not cp.touched


async def test_a_device_with_only_its_rules_learning_is_checkpointed_too() -> None:
    cp, eng = _checkpoints(_Producer())
    eng.learners["bin_fire"].relearn("bin-without-detector", [18.0, 9])
    assert await cp.save({4}) == 2
    records = dict(cp.producer.sent[0][1])  # type: ignore[attr-defined]
    snap = decode(records[cp.prefix.encode() + b"bin-without-detector"], eng.detector_name)
    assert snap == (1, {}, {"bin_fire": [18.0, 9]})


async def test_a_failed_save_keeps_the_devices_for_the_next_one() -> None:
    cp, _ = _checkpoints(_Producer(fail=True))
    assert await cp.save(partitions={4}) == 0
    assert cp.touched == {
        1: {"dust-0": 7, "dust-1": 8},
        4: {"dust-2": 9, "bin-without-detector": 1},
    }


async def test_a_partitions_devices_are_known_before_and_after_a_save() -> None:
    cp, _ = _checkpoints(_Producer())
    assert cp.devices_of({1}) == {"dust-0", "dust-1"}
    await cp.save({1})
    cp.touched[1] = {"dust-5": 10}
    assert cp.devices_of({1}) == {"dust-0", "dust-1", "dust-5"}
    assert cp.devices_of({1, 4}) == {"dust-0", "dust-1", "dust-5", "dust-2", "bin-without-detector"}
    cp.drop({1})
    assert cp.devices_of({1}) == set() and cp.devices_of({4}) == {"dust-2", "bin-without-detector"}
