"""``ttn_v3``: The Things Stack v3 uplink messages (MQTT/webhook ``as.up.data`` JSON).

Fields come from ``uplink_message.decoded_payload`` (the application's payload formatter
must emit canonical names). Identity: ``end_device_ids.device_id`` (or ``dev_eui``) must
be the topic's device. Time: ``decoded_payload.ts`` when the device sends its own clock,
else ``uplink_message.received_at`` (network server), else the top-level ``received_at``,
else the gateway's.
``seq``: ``decoded_payload.seq``, else the LoRaWAN frame counter ``uplink_message.f_cnt``.
Position: ``decoded_payload`` lat/lon, else ``uplink_message.locations`` (``frm-payload``,
then ``user``). ``rx_metadata[].location`` is where the *gateway* stands, kilometres from
the device, so it is only used when the decoder is built with ``use_gateway_location=True``.

Example:
    >>> from datetime import datetime, timezone
    >>> from ingest.decoders.base import parse_topic
    >>> topic = parse_topic("city/north/bin/bin-0042/up")
    >>> msg = (b'{"end_device_ids":{"device_id":"bin-0042"},"uplink_message":{"f_cnt":7,'
    ...        b'"decoded_payload":{"fill_ratio":0.4},"received_at":"2024-05-01T00:00:00Z"}}')
    >>> r = TtnV3().decode(topic, msg, datetime(2024, 5, 1, tzinfo=timezone.utc))[0]
    >>> r["device_id"], r["seq"], r["fill_ratio"]
    ('bin-0042', 7, 0.4)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from ingest.decoders.base import (
    DecodeError,
    Decoder,
    RawReading,
    TopicInfo,
    json_start,
    load_json,
    parse_time,
    pick_identity,
)

_OBJECT: Final = ord("{")


def _object(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DecodeError("bad_envelope", f"{key!r} must be a JSON object")
    return value


def _location(loc: object) -> tuple[object, object] | None:
    if isinstance(loc, dict) and "latitude" in loc and "longitude" in loc:
        return loc["latitude"], loc["longitude"]
    return None


class TtnV3(Decoder):
    """The Things Stack v3 uplinks, recognised by their ``end_device_ids`` key."""

    name = "ttn_v3"

    def __init__(self, *, use_gateway_location: bool = False) -> None:
        self.use_gateway_location = use_gateway_location

    def matches(self, topic: str, payload: bytes) -> bool:
        return json_start(payload) == _OBJECT and b'"end_device_ids"' in payload

    def decode(
        self, topic: TopicInfo, payload: bytes, received_at: datetime
    ) -> list[RawReading | DecodeError]:
        msg = load_json(payload)
        if not isinstance(msg, dict):
            raise DecodeError("bad_envelope", "a TTN uplink is a JSON object")
        ids = _object(msg, "end_device_ids")
        up = _object(msg, "uplink_message")
        if "decoded_payload" not in up:
            raise DecodeError("no_decoded_payload", "uplink has no decoded_payload")
        fields = dict(_object(up, "decoded_payload"))
        device = pick_identity(topic.device_id, ids.get("device_id"), ids.get("dev_eui"))
        if device is not None:
            fields.setdefault("device_id", device)
        for when in (fields.get("ts"), up.get("received_at"), msg.get("received_at")):
            if when is not None:
                fields["ts"] = parse_time(when)
                break
        else:
            fields["ts"] = received_at
        if "seq" not in fields and up.get("f_cnt") is not None:
            fields["seq"] = up["f_cnt"]
        if "lat" not in fields and "lon" not in fields:
            position = self._position(up)
            if position is not None:
                fields["lat"], fields["lon"] = position
        return [fields]

    def _position(self, up: dict[str, Any]) -> tuple[object, object] | None:
        locations = _object(up, "locations")
        for source in ("frm-payload", "user"):
            position = _location(locations.get(source))
            if position is not None:
                return position
        if self.use_gateway_location:
            rx = up.get("rx_metadata")
            for meta in rx if isinstance(rx, list) else ():
                position = _location(meta.get("location") if isinstance(meta, dict) else None)
                if position is not None:
                    return position
        return None
