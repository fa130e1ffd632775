"""Property: whatever arrives, decode_message answers readings or rejects and never raises."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.decode import DecodeResult, decode_message
from ingest.decoders.lamp_binary import LampRecord, encode_lamp_frame
from ingest.readings import FAMILIES, ReadingBase, StreetlightReading, from_record, to_record

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
REASON = re.compile(r"[a-z][a-z_]*")

FIELD_NAMES = [
    "device_id", "family", "district", "ts", "received_at", "seq", "lat", "lon", "late",
    "power_state", "dimming_pct", "power_w", "voltage_v", "current_a", "power_factor",
    "circuit_id", "cabinet_id", "fill_ratio", "temperature_c", "tilt_deg", "lid_open",
    "battery_v", "emptied", "speed_kmh", "heading_deg", "ignition", "odometer_km",
    "vehicle_kind", "route_id", "payload_state", "pm25_ugm3", "pm10_ugm3", "tsp_ugm3",
    "noise_dba", "wind_ms", "site_id",
]  # fmt: skip
SENML_LABELS = ["bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t"]

# Per-test settings, not a loaded profile: a profile would leak into other modules' tests.
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.from_regex(r"[a-z0-9][a-z0-9_-]{2,12}", fullmatch=True)
valid_topics = st.builds(
    "city/{}/{}/{}/up".format,
    st.from_regex(r"[a-z0-9][a-z0-9_-]{1,8}", fullmatch=True),
    st.sampled_from(FAMILIES),
    ids,
)
any_topics = st.one_of(valid_topics, st.text(max_size=80))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(
        ["on", "off", "dim", "muck", "loaded", "2024-05-01T11:59:00Z", "W", "kW", "%", "Cel"]
    ),
    st.floats(min_value=0, max_value=1),
    st.integers(min_value=1714560000, max_value=1714565000),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)
readingish = st.dictionaries(
    st.sampled_from(FIELD_NAMES), st.one_of(scalars, json_values), max_size=8
)
senml_records = st.dictionaries(st.sampled_from(SENML_LABELS), scalars, min_size=1, max_size=6)
structured = st.one_of(
    readingish,
    st.lists(st.one_of(readingish, json_values), max_size=6),
    st.lists(senml_records, max_size=6),
    st.builds(
        lambda ids_, up: {"end_device_ids": ids_, "uplink_message": up},
        st.one_of(st.dictionaries(st.sampled_from(["device_id", "dev_eui"]), scalars), scalars),
        st.one_of(
            st.fixed_dictionaries(
                {"decoded_payload": readingish},
                optional={"f_cnt": scalars, "received_at": scalars, "locations": json_values},
            ),
            json_values,
        ),
    ),
    st.fixed_dictionaries(
        {"deviceInfo": st.one_of(json_values, st.fixed_dictionaries({"deviceName": scalars}))},
        optional={"object": st.one_of(readingish, scalars), "time": scalars, "fCnt": scalars},
    ),
    json_values,
)


def check(res: DecodeResult) -> None:
    assert isinstance(res, DecodeResult)
    assert res.readings or res.rejects, "a message must end somewhere"
    for rej in res.rejects:
        assert REASON.fullmatch(rej.reason), rej
        assert isinstance(rej.detail, str)
        assert rej.reason != "internal", rej.detail  # a decoder bug, not bad input
    for reading in res.readings:
        assert isinstance(reading, ReadingBase)
        # Every accepted reading must also serialise to the canonical record.
        assert from_record(to_record(reading))["device_id"] == reading.device_id


@FAST
@given(topic=any_topics, payload=st.binary(max_size=512))
def test_any_bytes_on_any_topic(topic: str, payload: bytes) -> None:
    check(decode_message(topic, payload, NOW))


@FAST
@given(topic=valid_topics, first=st.sampled_from(b"{[\xc1 "), rest=st.binary(max_size=256))
def test_plausible_first_bytes_on_valid_topics(topic: str, first: int, rest: bytes) -> None:
    check(decode_message(topic, bytes([first]) + rest, NOW))


@FAST
@given(topic=valid_topics, doc=structured)
def test_structured_json_on_a_valid_topic(topic: str, doc: Any) -> None:
    check(decode_message(topic, orjson.dumps(doc), NOW))


@FAST
@given(topic=valid_topics, items=st.lists(readingish, min_size=1, max_size=8))
def test_every_batch_item_is_accounted_for(topic: str, items: list[dict[str, Any]]) -> None:
    res = decode_message(topic, orjson.dumps(items), NOW)
    check(res)
    assert len(res.readings) + len(res.rejects) == len(items)
    assert all(rej.index is not None for rej in res.rejects)


lamp_records = st.builds(
    LampRecord,
    lamp_no=st.integers(0, 600),
    power_state=st.sampled_from([None, "on", "off", "dim"]),
    dimming_pct=st.one_of(st.none(), st.integers(0, 254)),
    power_w=st.one_of(st.none(), st.floats(0, 6553.4)),
    voltage_v=st.one_of(st.none(), st.floats(0, 655.34)),
    current_a=st.one_of(st.none(), st.floats(0, 65.534)),
    power_factor=st.one_of(st.none(), st.floats(0, 65.534)),
)


@FAST
@given(
    device=ids,
    records=st.lists(lamp_records, min_size=1, max_size=20, unique_by=lambda r: r.lamp_no),
    seq=st.integers(0, 2**32 - 1),
    ts=st.integers(0, 2**32 - 1),
    ts_ms=st.booleans(),
)
def test_lamp_frames_round_trip(
    device: str, records: list[LampRecord], seq: int, ts: int, ts_ms: bool
) -> None:
    topic = f"city/central/streetlight/{device}/up"
    res = decode_message(topic, encode_lamp_frame(records, seq=seq, ts=ts, ts_ms=ts_ms), NOW)
    check(res)
    assert len(res.readings) + len(res.rejects) == len(records)
    assert not [j for j in res.rejects if j.reason not in ("validation", "bad_ts")]
    for reading in res.readings:
        assert isinstance(reading, StreetlightReading)
        assert reading.seq == seq


@FAST
@given(
    records=st.lists(lamp_records, min_size=1, max_size=4, unique_by=lambda r: r.lamp_no),
    mutations=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=4),
    cut=st.integers(0, 100),
    tail=st.binary(max_size=4),
)
def test_mutated_lamp_frames(
    records: list[LampRecord], mutations: list[tuple[int, int]], cut: int, tail: bytes
) -> None:
    frame = bytearray(encode_lamp_frame(records, seq=1, ts=NOW))
    for pos, xor in mutations:
        frame[pos % len(frame)] ^= xor
    payload = bytes(frame[: len(frame) - cut % len(frame)]) + tail
    res = decode_message("city/central/streetlight/cab-01/up", payload, NOW)
    check(res)
    if mutations or cut % len(frame) or tail:
        # Nearly every corruption is caught; a lucky one may still pass the CRC.
        assert len(res.readings) <= len(records)


@FAST
@given(
    topic=valid_topics,
    text=st.text(alphabet=string.printable + "é€\x00", max_size=200),
)
def test_arbitrary_text(topic: str, text: str) -> None:
    check(decode_message(topic, text.encode(), NOW))
