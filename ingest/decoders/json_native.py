"""``json_native``: citywatch's own JSON, one reading object or a list of them.

Field names are the canonical ones of ``ingest.readings``; ``ts`` is an RFC 3339 string
with an offset or epoch seconds (a number). ``device_id``, ``family`` and ``district`` may
be left out: the gateway fills them from the topic. ``received_at`` and ``late`` are the
gateway's to set and are overwritten if a device sends them.

Example:
    >>> from datetime import datetime, timezone
    >>> from ingest.decoders.base import parse_topic
    >>> topic = parse_topic("city/north/bin/bin-0042/up")
    >>> now = datetime(2024, 5, 1, tzinfo=timezone.utc)
    >>> raw = JsonNative().decode(topic, b'{"ts": 1714521600, "fill_ratio": 0.5}', now)
    >>> raw[0]["fill_ratio"], raw[0]["ts"].isoformat()
    (0.5, '2024-05-01T00:00:00+00:00')
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ingest.decoders.base import (
    DecodeError,
    Decoder,
    RawReading,
    TopicInfo,
    json_start,
    load_json,
    parse_time,
)

_OBJECT, _ARRAY = ord("{"), ord("[")


def item_from_json(item: Any) -> RawReading | DecodeError:
    """One JSON value as a raw reading: an object with its ``ts`` parsed."""
    if not isinstance(item, dict):
        return DecodeError("bad_item", f"expected a JSON object, got {type(item).__name__}")
    if "ts" in item:
        try:
            item["ts"] = parse_time(item["ts"])
        except DecodeError as exc:
            return exc
    return item


class JsonNative(Decoder):
    """The fallback for any JSON object or array no more specific decoder claimed."""

    name = "json_native"

    def matches(self, topic: str, payload: bytes) -> bool:
        return json_start(payload) in (_OBJECT, _ARRAY)

    def decode(
        self, topic: TopicInfo, payload: bytes, received_at: datetime
    ) -> list[RawReading | DecodeError]:
        obj = load_json(payload)
        if isinstance(obj, dict):
            return [item_from_json(obj)]
        if isinstance(obj, list):
            if not obj:
                raise DecodeError("empty_batch", "the JSON array holds no readings")
            return [item_from_json(item) for item in obj]
        raise DecodeError("bad_json", f"expected a JSON object or array, got {type(obj).__name__}")
