"""The sink's fast line builder must equal influxdb-client's own Point.to_line_protocol()."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from influxdb_client import Point

from processors.sinks.lines import point_line, reading_line

HOSTILE = st.text(
    alphabet=st.sampled_from(list("ab ,=\"'\\\n\t=é漢")), min_size=1, max_size=12
).filter(lambda t: t.strip() != "" and not t.endswith("\\"))


def _point(measurement: str, tags: dict[str, str], fields: dict[str, object], ts: int) -> str:
    p = Point(measurement)
    for k, v in tags.items():
        p.tag(k, v)
    for k, v in fields.items():
        p.field(k, v)
    return str(p.time(ts).to_line_protocol())


@given(
    device=HOSTILE, district=HOSTILE, note=HOSTILE, fill=st.floats(0, 1), seq=st.integers(0, 2**40)
)
def test_reading_line_equals_point(
    device: str, district: str, note: str, fill: float, seq: int
) -> None:
    rec = {
        "device_id": device,
        "family": "bin",
        "district": district,
        "ts": 1_700_000_000_123_456_789,
        "received_at": 5,
        "fill_ratio": fill,
        "seq": seq,
        "late": True,
        "note": note,
    }
    expected = _point(
        "bin",
        {"device_id": device, "district": district},
        {"fill_ratio": fill, "seq": seq, "late": True, "note": note, "received_at": 5},
        rec["ts"],
    )
    assert reading_line(rec) == expected


def test_tag_values_with_spaces_commas_equals_and_newlines_cannot_inject_lines() -> None:
    line = point_line("alerts", {"target": "a b,c=d\nbin x=1"}, {"message": 'say "hi"\nnext'}, 1)
    # One line of protocol, whatever the values hold: the newline in the tag value is escaped
    # by the client and the one in the string field is quoted.
    assert line.count("\n") == 1 and line.startswith("alerts,target=a\\ b\\,c\\=d")
    assert line == _point(
        "alerts", {"target": "a b,c=d\nbin x=1"}, {"message": 'say "hi"\nnext'}, 1
    )


def test_streetlight_tags_and_typed_fields() -> None:
    rec = {
        "device_id": "lamp-1",
        "family": "streetlight",
        "district": "c",
        "circuit_id": "c 1",
        "ts": 10,
        "received_at": 11,
        "power_state": "on",
        "power_w": 85.0,
        "seq": 3,
        "late": False,
    }
    line = reading_line(rec)
    assert line.startswith("streetlight,circuit_id=c\\ 1,device_id=lamp-1,district=c ")
    assert "power_w=85," in line and 'power_state="on"' in line and "seq=3i" in line
    assert "lit=1i" in line and "switched_on" not in line  # no dimming level reported
    assert line.endswith(" 10")


@given(power=st.floats(0, 300), dim=st.floats(0, 100))
def test_lamp_line_carries_its_indicators_as_the_client_writes_them(
    power: float, dim: float
) -> None:
    rec = {"device_id": "lamp-1", "family": "streetlight", "district": "c", "circuit_id": "c1",
           "ts": 10, "power_w": power, "dimming_pct": dim, "seq": 1}  # fmt: skip
    fields = {"power_w": power, "dimming_pct": dim, "seq": 1,
              "lit": int(power > 0), "switched_on": int(dim > 0)}  # fmt: skip
    tags = {"circuit_id": "c1", "device_id": "lamp-1", "district": "c"}
    assert reading_line(rec) == _point("streetlight", tags, fields, 10)
    assert "lit" not in rec  # the caller's record is left as it was


@given(levels=st.lists(st.floats(20, 130), min_size=1, max_size=20))
def test_dust_line_carries_noise_energy_whose_mean_is_the_leq(levels: list[float]) -> None:
    lines = [
        reading_line({"device_id": "d-1", "family": "dust", "district": "c", "site_id": "s1",
                      "ts": 10, "noise_dba": level, "pm10_ugm3": 40.0})
        for level in levels
    ]  # fmt: skip
    energies = [float(line.split("noise_energy=")[1].split(",")[0]) for line in lines]
    # The dust KPIs' 10 * log10(mean(noise_energy)): the energetic mean of the levels,
    # never below the arithmetic one (loud minutes dominate a Leq).
    leq = 10 * math.log10(sum(energies) / len(energies))
    assert min(levels) - 1e-9 <= leq <= max(levels) + 1e-9
    assert leq >= sum(levels) / len(levels) - 1e-9
    fields = {"noise_dba": levels[0], "pm10_ugm3": 40.0, "noise_energy": 10 ** (levels[0] / 10)}
    tags = {"device_id": "d-1", "district": "c", "site_id": "s1"}
    assert lines[0] == _point("dust", tags, fields, 10)
    no_noise = {"device_id": "d-1", "family": "dust", "district": "c", "ts": 10, "pm10_ugm3": 1.0}
    assert "noise_energy" not in reading_line(no_noise)


FIELD_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.none(),
    HOSTILE,
)


@given(st.dictionaries(HOSTILE, FIELD_VALUES, min_size=1, max_size=6))
def test_encode_fields_equals_the_clients_encoder(fields: dict[str, object]) -> None:
    from influxdb_client.client.write.point import _append_fields

    from processors.sinks.lines import encode_fields

    assert encode_fields(fields) == _append_fields(fields, {})


def test_float_text_equals_str_at_every_magnitude() -> None:
    """orjson formats most floats (processors.sinks.lines.float_text); the client uses str()."""
    import random
    import struct

    from processors.sinks.lines import float_text

    rng = random.Random(20261207)
    # Every exponent from random bit patterns, the sensors' usual values, and the edges of
    # the range float_text hands to orjson (and of str()'s switch to exponent notation).
    values = [
        struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(60_000)
    ]
    values += [rng.uniform(-500.0, 500.0) for _ in range(20_000)]
    values += [round(rng.uniform(0.0, 1e6), rng.randint(0, 6)) for _ in range(20_000)]
    for edge in (1e-4, 1e-5, 1e15, 1e16, 1e17, 2.0**53, 1.0, 0.1):
        for x in (edge, -edge):
            values += [x, math.nextafter(x, 0.0), math.nextafter(x, math.inf)]
    values += [0.0, -0.0, 5e-324, 1.7976931348623157e308]
    mismatched = [
        (v, float_text(v))
        for v in values
        if math.isfinite(v) and float_text(v) != str(v).removesuffix(".0")
    ]
    assert mismatched == []
