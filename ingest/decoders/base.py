"""The decoder interface, the uplink topic parser and helpers shared by decoders.

A decoder turns one MQTT payload into raw reading dicts (plain Python values, datetimes for
times) that ``ingest.readings.validate_reading`` then checks. It never validates ranges
itself: that is the models' job, so every format gets the same rules and messages.

A decoder may put a ``DecodeError`` in place of one item of a batch it could not read, so
one broken item does not lose its valid siblings; a ``DecodeError`` *raised* rejects the
whole message.

Example:
    >>> t = parse_topic("city/central/streetlight/lamp-0001/up")
    >>> (t.district, t.family, t.device_id)
    ('central', 'streetlight', 'lamp-0001')
    >>> parse_topic("city/central/streetlight/lamp-0001/down") is None
    True
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, ClassVar, Final, TypeAlias

import orjson
from mypy_extensions import mypyc_attr

from ingest.readings import DEVICE_ID_PATTERN, DISTRICT_PATTERN, FAMILIES

RawReading: TypeAlias = dict[str, Any]

_TOPIC_RE: Final = re.compile(
    rf"city/({DISTRICT_PATTERN[1:-1]})/({'|'.join(FAMILIES)})/({DEVICE_ID_PATTERN[1:-1]})/up"
)


class DecodeError(Exception):
    """A payload (or one item of it) cannot be decoded.

    ``reason`` is a short machine-readable code (``bad_json``, ``crc``...), ``detail`` text
    for humans.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """The parts of an uplink topic ``city/{district}/{family}/{device_id}/up``."""

    topic: str
    district: str
    family: str
    device_id: str


# Every device publishes on one topic: caching saves the regex on the hot path.
@lru_cache(maxsize=16384)
def parse_topic(topic: str) -> TopicInfo | None:
    """The topic's parts, or ``None`` when it is not a well-formed uplink topic."""
    m = _TOPIC_RE.fullmatch(topic)
    if m is None:
        return None
    return TopicInfo(topic, m[1], m[2], m[3])


# A decoder outside ingest/decoders (a plugin, a test double) stays interpreted and must be
# able to subclass the compiled base (citywatch.native).
@mypyc_attr(allow_interpreted_subclasses=True)
class Decoder(ABC):
    """One payload format. Instances are stateless and shared by all gateway threads."""

    name: ClassVar[str]
    # True when a decoder may emit readings for child devices named "{topic device}-{n}"
    # (a cabinet concentrator reporting its lamps).
    speaks_for_children: ClassVar[bool] = False

    @abstractmethod
    def matches(self, topic: str, payload: bytes) -> bool:
        """Cheap sniff (first byte, key presence): is this payload probably ours?"""

    @abstractmethod
    def decode(
        self, topic: TopicInfo, payload: bytes, received_at: datetime
    ) -> list[RawReading | DecodeError]:
        """Raw reading dicts (or per-item errors); raise ``DecodeError`` for the message."""


def json_start(payload: bytes) -> int:
    """The first non-whitespace byte of a payload (-1 when there is none)."""
    if payload and payload[0] not in b" \t\r\n":
        return payload[0]
    stripped = payload.lstrip(b" \t\r\n")
    return stripped[0] if stripped else -1


def load_json(payload: bytes) -> Any:
    """``orjson.loads`` with its errors (bad UTF-8, depth > 1024, syntax) as ``bad_json``."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("bad_json", str(exc)) from None


def pick_identity(topic_id: str, *candidates: object) -> str | None:
    """The topic's device id when any candidate names it (EUIs compare case-free), else
    the first string candidate, so a foreign id surfaces as a device mismatch."""
    strings = [c for c in candidates if isinstance(c, str) and c]
    if any(c == topic_id or c.lower() == topic_id for c in strings):
        return topic_id
    return strings[0] if strings else None


# 2**32 s is 2106: anything larger is almost surely milliseconds, which we refuse to guess.
_MAX_EPOCH_S: Final = 2**32


def parse_time(value: object, field: str = "ts") -> datetime:
    """A device time as an aware UTC datetime.

    Accepts an RFC 3339 / ISO 8601 string with an offset (``Z`` included, extra fractional
    digits truncated) or a JSON number of epoch seconds.
    """
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
            if dt.tzinfo is not None:
                return dt.astimezone(UTC)
        except (ValueError, OverflowError):
            raise DecodeError("bad_ts", f"{field}: not an ISO 8601 time: {value[:40]!r}") from None
        raise DecodeError("bad_ts", f"{field}: time has no UTC offset: {value[:40]!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value < _MAX_EPOCH_S:
            raise DecodeError("bad_ts", f"{field}: epoch seconds out of range: {value!r}")
        return datetime.fromtimestamp(value, UTC)
    raise DecodeError("bad_ts", f"{field}: expected ISO 8601 string or epoch seconds")
