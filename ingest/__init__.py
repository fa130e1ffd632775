"""MQTT -> decode and validate -> Kafka. Compiled copies of the decoders are used when built
from the current source (citywatch.native).

Example:
    $ citywatch gateway
"""

from citywatch.native import activate as _activate

_activate(__name__)
