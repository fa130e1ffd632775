"""Kafka -> rules and detectors -> InfluxDB. Compiled copies of the hot modules are used when
built from the current source (processors._native).

Example:
    $ citywatch process --instance p1
"""

from processors._native import activate as _activate

_activate()
