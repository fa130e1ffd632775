"""Logging set-up shared by the long-running commands.

Example:
    >>> setup("WARNING")
"""

from __future__ import annotations

import logging


def setup(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # While Kafka is down aiokafka logs the same connection error hundreds of times a
    # second; our own components log each availability change once, so keep only its worst.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    # httpx logs every request's full URL at INFO, and InfluxDB 1.x queries may carry the
    # password as a URL parameter (``p``): never let it reach a log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
