"""Generated credentials for the local stack, kept in ``<state_dir>/secrets.json`` (mode 0600).

A role's password comes from ``Settings.passwords[role]`` when set (e.g.
``CITYWATCH_PASSWORDS='{"gateway": "..."}'``), otherwise from the file, otherwise it is
generated once and stored. Passwords are never logged.

Example:
    >>> from citywatch.settings import Settings
    >>> pw = password(Settings(), "gateway")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from citywatch.settings import Settings

ROLES = ("gateway", "processor", "simulator", "notifier", "crews", "influx", "kafka")


def _path(settings: Settings) -> Path:
    return settings.state_dir / "secrets.json"


def load_all(settings: Settings) -> dict[str, str]:
    """All role passwords, creating the file with fresh random ones on first use."""
    path = _path(settings)
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    missing = [r for r in ROLES if r not in stored]
    if missing:
        for role in missing:
            stored[role] = secrets.token_urlsafe(18)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(stored, fh, indent=1)
        tmp.replace(path)
    for role, value in settings.passwords.items():
        stored[role] = value.get_secret_value()
    return stored


def password(settings: Settings, role: str) -> str:
    """The password of one role (see ROLES)."""
    return load_all(settings)[role]
