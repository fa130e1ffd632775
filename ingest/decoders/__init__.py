"""Payload decoders: one module per wire format, chosen by ``registry.pick_decoder``.

Example:
    >>> from ingest.decoders import DECODERS
    >>> "lamp_binary" in DECODERS
    True
"""

from ingest.decoders.base import DecodeError, Decoder, RawReading, TopicInfo, parse_topic
from ingest.decoders.registry import DECODERS, pick_decoder

__all__ = [
    "DECODERS",
    "DecodeError",
    "Decoder",
    "RawReading",
    "TopicInfo",
    "parse_topic",
    "pick_decoder",
]
