"""Daemons of the HA layout: each in its own process group, logged to a file, with a pid file.

The pid file (``<run dir>/pids/<name>.pid``) holds the process group id, so any process — the one
that started the daemon, a test, ``alexandrite ha down`` after a crash — can signal the whole
group (e.g. ``rabbitmq-server`` and its Erlang VM, ``runuser`` and Patroni).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def pid_dir(root: Path) -> Path:
    return root / "pids"


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot): tells a reused pid from ours."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def read_pid_file(path: Path) -> int | None:
    """The process group recorded in ``path``, or None when that process is gone or is not ours any more."""
    try:
        fields = path.read_text().split()
        pgid = int(fields[0])
    except (OSError, ValueError, IndexError):
        return None
    recorded = fields[1] if len(fields) > 1 else None
    now = start_time(pgid)
    if now is not None and recorded is not None and now != recorded:
        return None  # the pid was reused by another process
    return pgid if group_alive(pgid) else None


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in process group ``pgid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def stop_group(pgid: int, timeout: float = 30.0, sig: int = signal.SIGTERM) -> None:
    """``sig`` to the group, then SIGKILL for what is still there after ``timeout`` seconds."""
    signal_group(pgid, sig)
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_alive(pgid):
        signal_group(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class DaemonExited(RuntimeError):
    """A daemon that was being waited for is gone: waiting longer cannot help."""


def wait_until(condition: Callable[[], object], *, timeout: float, what: str, interval: float = 0.2) -> object:
    """Poll ``condition`` until it returns something true; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        last: Exception | None = None
        try:
            result = condition()
        except DaemonExited:
            raise
        except Exception as error:  # not up yet: keep asking
            result, last = None, error
        if result:
            return result
        if time.monotonic() > deadline:
            detail = f" (last error: {last!r})" if last is not None else ""
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s{detail}")
        time.sleep(interval)


@dataclass
class Daemon:
    """One long-running process of the layout."""

    name: str
    argv: list[str]
    root: Path
    env: dict[str, str] | None = None
    user: str | None = None  # run as this OS user (the caller is root)
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        return self.root / "logs" / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return pid_dir(self.root) / f"{self.name}.pid"

    def start(self) -> int:
        if self.running():
            raise RuntimeError(f"{self.name} is running already (pid file {self.pid_file})")
        argv = list(self.argv)
        if self.user and os.geteuid() == 0:
            argv = ["runuser", "-u", self.user, "--", *argv]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {' '.join(argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid_file.write_text(f"{self.process.pid} {start_time(self.process.pid) or ''}\n")
        return self.process.pid

    def pgid(self) -> int | None:
        return read_pid_file(self.pid_file)

    def running(self) -> bool:
        pgid = self.pgid()
        if self.process is not None and self.process.pid == pgid:
            return self.process.poll() is None
        return pgid is not None and group_alive(pgid)

    def alive(self) -> bool:
        """True while running; DaemonExited (with the end of its log) once it is gone."""
        if not self.running():
            raise DaemonExited(f"{self.name} exited; the end of {self.log}:\n{self.tail(1500)}")
        return True

    def kill(self) -> None:
        """SIGKILL the whole group at once: the machine it stands for dies."""
        pgid = self.pgid()
        if pgid is not None:
            signal_group(pgid, signal.SIGKILL)
            wait_until(lambda: not group_alive(pgid), timeout=20, what=f"{self.name} to die")
        self._reap()
        self.pid_file.unlink(missing_ok=True)

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> None:
        pgid = self.pgid()
        if pgid is not None:
            stop_group(pgid, timeout, sig)
        self._reap()
        self.pid_file.unlink(missing_ok=True)

    def _reap(self) -> None:
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def stop_recorded(root: Path, timeout: float = 30.0) -> list[str]:
    """Stop every daemon that left a pid file under ``root`` (``alexandrite ha down`` after a crash)."""
    stopped = []
    for pid_file in sorted(pid_dir(root).glob("*.pid")):
        pgid = read_pid_file(pid_file)
        if pgid is not None:
            stop_group(pgid, timeout)
            stopped.append(pid_file.stem)
        pid_file.unlink(missing_ok=True)
    return stopped
