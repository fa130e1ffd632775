"""Where the pipeline's own MQTT clients connect: the plaintext listener, or TLS when required.

With ``security.require_tls`` the broker has no plaintext listener, so the gateway, the
simulator, the notifier's MQTT channel and the downlink connect to ``security.tls_port``
trusting the project CA; with ``tls_client_certs`` too, each presents its role's certificate
(CN = its MQTT username, issued once under ``<state_dir>/tls/roles``). Otherwise they use
``mqtt.host:mqtt.port`` without TLS (the loopback listener).

Example:
    >>> from citywatch.settings import Settings
    >>> mqtt_endpoint(Settings(), "gateway")[2] is None  # the default: no TLS required
    True
"""

from __future__ import annotations

import ssl
from typing import Any

from citywatch import credentials
from citywatch.settings import Settings


def mqtt_endpoint(s: Settings, role: str) -> tuple[str, int, ssl.SSLContext | None]:
    """(host, port, TLS context or None) for a pipeline client of ``role``."""
    sec = s.security
    if not sec.require_tls:
        return s.mqtt.host, s.mqtt.port, None
    from citywatch.security.tls import BrokerTls

    ctx = BrokerTls(s).client_context(role if sec.tls_client_certs else None)
    return s.mqtt.host, sec.tls_port, ctx


def mqtt_kwargs(s: Settings, role: str) -> dict[str, Any]:
    """``host``/``port``/``tls`` and the role's login (MQTT username = role, its generated
    password) as keyword arguments for AsyncMqtt, LeanSubscriber and FastPublisher."""
    host, port, tls = mqtt_endpoint(s, role)
    return {
        "host": host,
        "port": port,
        "tls": tls,
        "username": role,
        "password": credentials.password(s, role),
    }
