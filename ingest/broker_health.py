"""Mosquitto's own loss and backlog counters, watched by the gateway so a broker drop is seen.

Mosquitto acknowledges a QoS 1 publish to the device, then drops it for any subscriber whose
queue is already at ``max_queued_messages`` (DESIGN.md: it does so silently; only a broker log
line says so). That happens when devices publish faster than the gateways take, for longer
than the queue lasts. The broker counts those drops in ``$SYS/broker/publish/messages/dropped``
and the messages it holds in ``$SYS/broker/store/messages/count`` (every ``sys_interval``,
10 s). The gateway subscribes to both on its own connection (QoS 0, not shared), exports them
as Prometheus gauges and logs an error whenever the drop count rises, so the operations centre
learns of the loss from the pipeline, not from a missing reading weeks later.

Example:
    >>> from prometheus_client import CollectorRegistry
    >>> h = BrokerHealth(CollectorRegistry())
    >>> h.on_message("$SYS/broker/publish/messages/dropped", b"5")  # baseline at start
    >>> h.on_message("$SYS/broker/publish/messages/dropped", b"12")
    >>> h.dropped_seen
    7
"""

from __future__ import annotations

import logging
from typing import Final

from prometheus_client import CollectorRegistry, Gauge

log = logging.getLogger("citywatch.gateway.broker")

DROPPED: Final = "$SYS/broker/publish/messages/dropped"
STORED: Final = "$SYS/broker/store/messages/count"
TOPICS: Final = (DROPPED, STORED)


class BrokerHealth:
    """Tracks the broker's drop counter (cumulative since the broker started) and its store."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.g_dropped = Gauge(
            "citywatch_mqtt_broker_dropped",
            "Messages Mosquitto dropped for subscribers over their queue limit (since it started)",
            registry=registry,
        )
        self.g_stored = Gauge(
            "citywatch_mqtt_broker_stored",
            "Messages Mosquitto holds (queued for subscribers, retained, in flight)",
            registry=registry,
        )
        self._last: int | None = None
        self.dropped_seen = 0  # drops that happened while this gateway watched

    def on_message(self, topic: str, payload: bytes) -> None:
        try:
            value = int(payload)
        except ValueError:
            return
        if topic == STORED:
            self.g_stored.set(value)
            return
        if topic != DROPPED:
            return
        self.g_dropped.set(value)
        last, self._last = self._last, value
        # The first value is the baseline; a smaller one means the broker restarted.
        if last is None or value <= last:
            return
        self.dropped_seen += value - last
        log.error(
            "Mosquitto dropped %d QoS 1 messages in the last interval (%d since it started): a "
            "subscriber's queue is over mqtt.max_queued_messages, so devices publish faster "
            "than the gateways take (add gateways), or a dead session still collects messages",
            value - last,
            value,
        )
