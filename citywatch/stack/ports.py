"""Free TCP ports for private stacks, taken below the range the kernel gives to clients.

``bind(("127.0.0.1", 0))`` answers with a port from the ephemeral range, the same range the
kernel draws the local port of every outgoing connection from. A private stack chooses its
ports first and binds them seconds later (Kafka starts in ~10 s), and in between any Kafka or
HTTP client on the machine may be given the same port: CI once failed with InfluxDB's
``bind: address already in use`` on such a port. Ports below the ephemeral range are only
ever taken by servers that ask for them, so a port free now stays free.

>>> low, _ = ephemeral_range()
>>> p = free_port()
>>> p < low or low <= 2048
True
>>> p != free_port()  # never the same port twice in one process
True
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: How many ports below the ephemeral range to choose from (Linux's default range starts at
#: 32768, so 20768-32767).
SPAN = 12_000
_given: set[int] = set()
_rng = random.Random()  # private: a test seeding the global generator must not repeat ports


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for client ports (Linux default when it cannot be read)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` no server holds now and no client will be given, new in this process."""
    low, _ = ephemeral_range()
    if low > 2048:
        first = max(1024, low - SPAN)
        for _ in range(200):
            port = _rng.randrange(first, low)
            if port not in _given and _bindable(host, port):
                _given.add(port)
                return port
    # A tuned kernel leaves no room below its range: fall back on the kernel's choice.
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = int(sock.getsockname()[1])
    _given.add(port)
    return port
