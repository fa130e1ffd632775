"""Names -> decoder instances, in sniffing priority order.

``decode_message`` asks each decoder's cheap ``matches`` in this order and uses the first
that says yes, so specific formats come before the catch-all ``json_native``. Adding a
decoder is one new module plus one line here.

Example:
    >>> list(DECODERS)
    ['lamp_binary', 'ttn_v3', 'chirpstack_v4', 'senml', 'json_native']
    >>> pick_decoder("city/a1/bin/bin-0001/up", b'[{"n":"fill","v":0.3}]').name
    'senml'
"""

from __future__ import annotations

from typing import Final

from ingest.decoders.base import Decoder
from ingest.decoders.chirpstack_v4 import ChirpstackV4
from ingest.decoders.json_native import JsonNative
from ingest.decoders.lamp_binary import LampBinary
from ingest.decoders.senml import SenML
from ingest.decoders.ttn_v3 import TtnV3

DECODERS: Final[dict[str, Decoder]] = {
    d.name: d
    for d in (
        LampBinary(),
        TtnV3(),
        ChirpstackV4(),
        SenML(),
        JsonNative(),  # catch-all for JSON: keep last
    )
}


def pick_decoder(topic: str, payload: bytes) -> Decoder | None:
    """The first decoder whose sniff accepts the payload, or ``None``."""
    for decoder in DECODERS.values():
        if decoder.matches(topic, payload):
            return decoder
    return None
