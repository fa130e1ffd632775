"""Start, find and stop the local servers by pid file, so ``down`` stops only what ``up`` started.

Example:
    >>> from pathlib import Path
    >>> p = ManagedProcess("demo", Path("/tmp/cw-demo"), marker="sleep")
    >>> p.running()
    False
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class StackError(RuntimeError):
    """A service could not be installed, started or reached; the message says where to look."""


@dataclass
class ManagedProcess:
    """A server process started detached, remembered by ``<dir>/<name>.pid``."""

    name: str
    run_dir: Path
    marker: str  # a string its command line must contain, so a recycled pid is not taken for it

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return None
        if self.marker.encode() not in cmdline:
            return None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        # A zombie (state Z) has exited; only its parent has not reaped it yet.
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI that started it
                env={**os.environ, **(env or {})},
                cwd=self.run_dir,
            )
        self.pid_file.write_text(str(proc.pid))
        # Until exec() completes, /proc shows the parent's command line without the marker;
        # wait for it so an instant health check does not mistake the child for dead.
        deadline = time.monotonic() + 5.0
        while proc.poll() is None and not self.running() and time.monotonic() < deadline:
            time.sleep(0.02)
        return proc.pid

    def signal(self, sig: signal.Signals) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, sig)
        return True

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after the timeout. True if something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.2)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log yet)"


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_until(
    check: Callable[[], bool],
    timeout_s: float,
    proc: ManagedProcess,
    what: str,
    hint: str,
) -> None:
    """Poll ``check`` until true; on timeout or early exit raise a StackError naming the log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        if not proc.running():
            raise StackError(
                f"{what} exited during start-up. Log: {proc.log_file}\n"
                f"Likely cause: {hint}\n--- last lines ---\n{proc.log_tail()}"
            )
        time.sleep(0.3)
    raise StackError(
        f"{what} did not become healthy within {timeout_s:.0f}s. Log: {proc.log_file}\n"
        f"Likely cause: {hint}\n--- last lines ---\n{proc.log_tail()}"
    )


def require_free_port(host: str, port: int, what: str) -> None:
    if port_open(host, port):
        raise StackError(
            f"port {host}:{port} is in use by another program, so {what} cannot start. "
            f"Stop that program (e.g. `ss -ltnp | grep :{port}`) or change the port in settings."
        )
