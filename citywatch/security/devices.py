"""Per-device MQTT credentials: a register under ``<state_dir>/devices/devices.json``.

``add`` generates a password (shown once, never stored in clear: the register keeps only
Mosquitto's PBKDF2-SHA512 hash made by ``mosquitto_passwd``), ``revoke`` removes it; both
regenerate the broker's password file and ACL and reload Mosquitto with SIGHUP (sessions are
kept; a revoked device that is still connected is disconnected by the reload). The ACL's
``pattern`` lines (citywatch.stack.mosquitto.ACL) give a device, whose username is its id,
only its own ``up``/``status``/``ack`` topics to write and its own ``down`` topic to read.

The gateway's unknown-device policy (``settings.security.unknown_devices``) uses
``DevicePolicy``: "accept" remembers a new id as auto-registered, "deadletter" refuses ids
the register does not hold.

Example:
    >>> from citywatch.settings import Settings
    >>> reg = DeviceRegister(Settings(state_dir=Path("/tmp/cw-doc")))
    >>> reg.path.name
    'devices.json'
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from citywatch.settings import Settings
from ingest.readings import DEVICE_ID_PATTERN

RESERVED = frozenset({"gateway", "processor", "simulator", "notifier", "crews", "influx"})
_ID = re.compile(DEVICE_ID_PATTERN)


class DeviceError(ValueError):
    """A device id that cannot be registered (bad pattern, reserved, already there...)."""


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    added_at: str
    # Mosquitto password-file hash ("$7$...").
    pw_hash: str = ""
    cert_serial: int | None = None

    @property
    def has_login(self) -> bool:
        return bool(self.pw_hash) or self.cert_serial is not None


def hash_password(user: str, password: str) -> str:
    """Mosquitto's own hash of a password (``mosquitto_passwd -U`` on a private temp file)."""
    with tempfile.TemporaryDirectory(prefix="cw-pw-") as tmp:
        path = Path(tmp) / "pw"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{user}:{password}\n")
        subprocess.run(["mosquitto_passwd", "-U", str(path)], check=True, capture_output=True)
        line = path.read_text().strip()
    name, _, hashed = line.partition(":")
    if name != user or not hashed.startswith("$"):
        raise RuntimeError("mosquitto_passwd did not hash the password")
    return hashed


class DeviceRegister:
    """The devices known to the broker; every change is atomic and serialised by a lock."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.dir = settings.state_dir / "devices"

    @property
    def path(self) -> Path:
        return self.dir / "devices.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def load(self) -> dict[str, Device]:
        try:
            raw: dict[str, dict[str, Any]] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return {k: Device(**v) for k, v in raw.items()}

    def _save(self, devices: dict[str, Device]) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({k: asdict(v) for k, v in sorted(devices.items())}, fh, indent=1)
        tmp.replace(self.path)

    @staticmethod
    def check_id(device_id: str) -> None:
        if not _ID.fullmatch(device_id):
            raise DeviceError(f"device id {device_id!r} does not match {DEVICE_ID_PATTERN}")
        if device_id in RESERVED:
            raise DeviceError(f"device id {device_id!r} is a reserved role name")

    def add(
        self, device_id: str, password: str | None = None, *, cert_serial: int | None = None
    ) -> str:
        """Register (or re-key) a device; returns its password (generated unless given)."""
        self.check_id(device_id)
        password = password or secrets.token_urlsafe(18)
        hashed = hash_password(device_id, password)
        with self._locked():
            devices = self.load()
            devices[device_id] = Device(
                device_id, datetime.now(UTC).isoformat(timespec="seconds"), hashed, cert_serial
            )
            self._save(devices)
        return password

    @property
    def seen_path(self) -> Path:
        return self.dir / "seen.txt"

    def remember(self, device_id: str) -> None:
        """Record an id seen on an uplink as auto-registered (no login).

        An O_APPEND write of one short line: atomic, no lock, cheap enough for the gateway.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.seen_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, f"{device_id}\n".encode())
        finally:
            os.close(fd)

    def auto_registered(self) -> list[str]:
        """Ids seen on uplinks that hold no credentials of their own."""
        try:
            seen = set(self.seen_path.read_text().split())
        except FileNotFoundError:
            return []
        return sorted(seen - set(self.load()))

    def revoke(self, device_id: str) -> Device | None:
        """Remove a device; returns what was removed (None if it was not registered)."""
        with self._locked():
            devices = self.load()
            gone = devices.pop(device_id, None)
            if gone is not None:
                self._save(devices)
                if gone.cert_serial is not None:
                    revoked = self.dir / "revoked_serials.json"
                    serials = json.loads(revoked.read_text()) if revoked.exists() else []
                    revoked.write_text(json.dumps(sorted({*serials, gone.cert_serial})))
        return gone

    def revoked_serials(self) -> list[int]:
        path = self.dir / "revoked_serials.json"
        return list(json.loads(path.read_text())) if path.exists() else []

    def passwd_lines(self) -> list[str]:
        """``id:hash`` lines for Mosquitto's password file (devices that may log in)."""
        return [f"{d.device_id}:{d.pw_hash}" for d in self.load().values() if d.pw_hash]


def apply(settings: Settings) -> bool:
    """Regenerate the broker's password file and ACL; SIGHUP it if running (True then)."""
    from citywatch.stack.mosquitto import Mosquitto

    broker = Mosquitto(settings)
    broker.write_config()
    if broker.proc.running():
        broker.reload()
        return True
    return False


class DevicePolicy:
    """The gateway's answer to "may this device id send uplinks?" (see module docstring)."""

    def __init__(self, settings: Settings) -> None:
        mode = settings.security.unknown_devices
        if mode not in ("accept", "deadletter"):
            raise ValueError(f"security.unknown_devices must be accept or deadletter: {mode!r}")
        self.mode = mode
        self.register = DeviceRegister(settings)
        self.known: set[str] = set(self.register.load())
        if mode == "accept":
            self.known |= set(self.register.auto_registered())
        self._mtime = self._stat()

    def _stat(self) -> float:
        try:
            return self.register.path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def refresh(self) -> None:
        """Pick up devices added or revoked since (cheap when nothing changed)."""
        mtime = self._stat()
        if mtime != self._mtime:
            self._mtime = mtime
            self.known = set(self.register.load())

    def allows(self, device_id: str) -> bool:
        if device_id in self.known:
            return True
        if self.mode == "deadletter":
            self.refresh()
            return device_id in self.known
        # "accept": remember it once, so `citywatch devices list` shows who is talking.
        self.known.add(device_id)
        if _ID.fullmatch(device_id):
            self.register.remember(device_id)
        return True
