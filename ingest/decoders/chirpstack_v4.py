"""``chirpstack_v4``: ChirpStack v4 uplink events (``event/up`` JSON).

Fields come from ``object`` (the device profile's codec output, canonical names).
Identity: ``deviceInfo.deviceName`` or ``deviceInfo.devEui`` must be the topic's device.
Time: ``object.ts`` when the device sends its own clock, else the event's ``time``, else
the gateway's ``received_at``. ``seq``: ``object.seq``, else the frame counter ``fCnt``.
``rxInfo[].location`` is the gateway's position, never the device's, and is ignored.

Example:
    >>> from datetime import datetime, timezone
    >>> from ingest.decoders.base import parse_topic
    >>> topic = parse_topic("city/harbour/dust/dust-0007/up")
    >>> msg = (b'{"deviceInfo":{"deviceName":"dust-0007","devEui":"0102030405060708"},'
    ...        b'"time":"2024-05-01T00:00:00Z","fCnt":3,"object":{"pm10_ugm3":41.5}}')
    >>> r = ChirpstackV4().decode(topic, msg, datetime(2024, 5, 1, tzinfo=timezone.utc))[0]
    >>> r["device_id"], r["seq"], r["pm10_ugm3"]
    ('dust-0007', 3, 41.5)
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

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


class ChirpstackV4(Decoder):
    """ChirpStack v4 uplink events, recognised by their ``deviceInfo`` key."""

    name = "chirpstack_v4"

    def matches(self, topic: str, payload: bytes) -> bool:
        return json_start(payload) == _OBJECT and b'"deviceInfo"' in payload

    def decode(
        self, topic: TopicInfo, payload: bytes, received_at: datetime
    ) -> list[RawReading | DecodeError]:
        event = load_json(payload)
        if not isinstance(event, dict):
            raise DecodeError("bad_envelope", "a ChirpStack event is a JSON object")
        info = event.get("deviceInfo")
        if not isinstance(info, dict):
            raise DecodeError("bad_envelope", "'deviceInfo' must be a JSON object")
        obj = event.get("object")
        if obj is None:
            raise DecodeError("no_decoded_payload", "event has no decoded 'object'")
        if not isinstance(obj, dict):
            raise DecodeError("bad_envelope", "'object' must be a JSON object")
        fields = dict(obj)
        device = pick_identity(topic.device_id, info.get("deviceName"), info.get("devEui"))
        if device is not None:
            fields.setdefault("device_id", device)
        when = fields["ts"] if fields.get("ts") is not None else event.get("time")
        fields["ts"] = received_at if when is None else parse_time(when)
        if "seq" not in fields and event.get("fCnt") is not None:
            fields["seq"] = event["fCnt"]
        return [fields]
