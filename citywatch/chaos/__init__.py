"""The fault matrix: kill -9 or stall each part under steady load and count what was lost.

A PRIVATE stack (own state dir and ports, shared binaries from ``cache_dir``) runs Mosquitto,
Kafka and InfluxDB; a gateway and a processor run as real processes. For each case a
publisher sends QoS 1 bin readings (unique ``seq`` per message) at a steady rate and records
every id the broker acknowledged (the device-side ledger). During the load one component
gets ``kill -9`` (then restarted, as a supervisor would) or ``SIGSTOP`` for ``stall_s``
then ``SIGCONT``. Afterwards:

- lost: acknowledged ids that never reached InfluxDB;
- dup: readings that reached Kafka more than once (at-least-once) and points stored in
  InfluxDB beyond one per id (must be 0: a replay overwrites its own series and time);
- alert dup: alert events with the same (alert id, state) published twice;
- recovery: seconds from the fault's end until InfluxDB holds every id acknowledged before it;
- max RSS of gateway, processor (and notifier) during the case (bounded while a downstream
  part is down).

Notifier cells (and any cell with ``notify=True``) also run ``citywatch notify`` on its own
SQLite DB in the private state dir, with one crew whose webhook is a small HTTP receiver the
harness runs (``Receiver``: records every POST, checks its signature). Every
``alert_every``-th reading then comes from a new bin at fill 0.95, which ``bin_overflow``
raises at once: a steady stream of new alerts, hence new work orders and notifications,
through the fault. Afterwards:

- notif lost: alert ids raised on ``citywatch.alerts`` with no ``opened`` webhook delivery;
- notif dup: a notification (alert id, event) delivered under more than one idempotency
  key: a duplicate no receiver can recognise (must be 0);
- resent: the same idempotency key delivered again (a crash between a send and its "sent"
  mark; receivers dedupe on the key, as docs/notifier.md asks);
- notif recovery: seconds from the fault's end until every alert bin acknowledged before it
  had its notification.


Modules:

- ``env``: settings of the private stack and the environment of its subprocesses;
- ``receiver``: the crew webhook receiver (``Receiver``, ``Received``);
- ``worker``: the supervised ``citywatch`` processes (``Worker``) and their RSS;
- ``load``: the QoS 1 publisher and its ledger of acknowledged ids (``Load``);
- ``harness``: the private stack, fault injection and one measured case (``Chaos``,
  ``CaseResult``);
- ``matrix``: the cases, the table and the ``citywatch chaos`` command.

Example:
    $ citywatch chaos --cases gateway:kill9,processor:stall --stall-s 30
    $ citywatch chaos --cases notifier:kill9,notifier:stall
"""

from citywatch.chaos.env import private_settings
from citywatch.chaos.harness import CaseResult, Chaos
from citywatch.chaos.matrix import chaos_command, format_matrix, parse_cases
from citywatch.chaos.receiver import Receiver
from citywatch.chaos.worker import Worker

__all__ = [
    "CaseResult",
    "Chaos",
    "Receiver",
    "Worker",
    "chaos_command",
    "format_matrix",
    "parse_cases",
    "private_settings",
]
