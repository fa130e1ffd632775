"""Prometheus metrics of the gateway: what came in, went on, went to the dead-letter topic.

Label children are cached because ``.labels()`` on every message is measurable at 20k msg/s.

Example:
    >>> m = GatewayMetrics()
    >>> m.forwarded("bin")
    >>> m.forwarded_by["bin"]._value.get()
    1.0
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._received = Counter(
            "citywatch_gateway_readings_received",
            "Readings decoded from MQTT",
            ["family"],
            registry=r,
        )
        self._forwarded = Counter(
            "citywatch_gateway_readings_forwarded",
            "Readings acknowledged by Kafka",
            ["family"],
            registry=r,
        )
        self._dead = Counter(
            "citywatch_gateway_deadlettered",
            "Messages or readings sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.messages = Counter(
            "citywatch_gateway_mqtt_messages", "MQTT messages received", registry=r
        )
        self.spooled = Counter(
            "citywatch_gateway_spooled", "MQTT messages spooled to disk", registry=r
        )
        self.inflight = Gauge(
            "citywatch_gateway_inflight", "MQTT messages not yet acknowledged", registry=r
        )
        self.spool_bytes = Gauge(
            "citywatch_gateway_spool_bytes", "Bytes waiting in the spool", registry=r
        )
        self.produce_latency = Histogram(
            "citywatch_gateway_produce_seconds",
            "MQTT receive to Kafka ack",
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.received_by: dict[str, Counter] = {}
        self.forwarded_by: dict[str, Counter] = {}
        self.dead_by: dict[str, Counter] = {}

    def received(self, family: str, n: int = 1) -> None:
        c = self.received_by.get(family)
        if c is None:
            c = self.received_by[family] = self._received.labels(family)
        c.inc(n)

    def forwarded(self, family: str, n: int = 1) -> None:
        c = self.forwarded_by.get(family)
        if c is None:
            c = self.forwarded_by[family] = self._forwarded.labels(family)
        c.inc(n)

    def dead(self, reason: str, n: int = 1) -> None:
        c = self.dead_by.get(reason)
        if c is None:
            c = self.dead_by[reason] = self._dead.labels(reason)
        c.inc(n)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        if port:
            start_http_server(port, addr=host, registry=self.registry)
