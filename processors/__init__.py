"""Kafka -> rules and detectors -> InfluxDB. Compiled copies of the hot modules are used when
built from the current source (citywatch.native).

Example:
    $ citywatch process --instance p1
"""

from citywatch.native import activate as _activate

_activate(__name__)
