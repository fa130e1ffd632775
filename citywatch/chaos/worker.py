"""The ``citywatch`` processes a harness supervises (gateway, processor, notifier) and their RSS.

Example:
    >>> rss_mb(None)  # no process, no memory
    0.0
    >>> w = Worker("gateway", ["gateway"], env, Path("gateway.log"))  # doctest: +SKIP
    >>> w.start(); w.wait_log("up (mode")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

REPO = Path(__file__).resolve().parent.parent.parent


class Worker:
    """A ``citywatch <cmd>`` process the harness supervises (restarts after a kill)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.args, self.env, self.log = name, args, env, log
        self.p: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with self.log.open("ab") as fh:
            self.p = subprocess.Popen(
                [sys.executable, "-m", "citywatch.cli", *self.args],
                env={**os.environ, **self.env},
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.p.pid if self.p is not None and self.p.poll() is None else None

    def wait_log(self, text: str, timeout_s: float = 90.0, after: int = 0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace")[after:]:
                return
            if self.pid is None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: {text!r} not seen in {timeout_s}s: {self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` s; the exit status (0 if never started)."""
        if self.p is None or self.p.poll() is not None:
            return self.p.returncode if self.p else 0
        self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return self.p.wait(10)


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
