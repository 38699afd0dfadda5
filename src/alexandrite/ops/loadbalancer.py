"""HAProxy in front of the API instances: config from deploy/haproxy, runtime API over its socket."""

from __future__ import annotations

import csv
import io
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

TEMPLATE = Path(__file__).resolve().parents[3] / "deploy" / "haproxy" / "haproxy.cfg.tmpl"


@dataclass(frozen=True)
class Backend:
    service: str
    public_port: int
    slot_ports: tuple[int, ...]  # 2N slots; the first N start enabled, the rest are spares
    active: int

    def server(self, slot: int) -> str:
        return f"{self.service}/s{slot}"


def render_config(backends: list[Backend], *, host: str, stats_socket: Path, stats_port: int,
                  template: Path = TEMPLATE) -> str:
    sections = []
    for backend in backends:
        lines = [f"frontend {backend.service}_in", f"    bind {host}:{backend.public_port}",
                 f"    default_backend {backend.service}", "", f"backend {backend.service}",
                 "    balance leastconn"]
        for slot, port in enumerate(backend.slot_ports):
            spare = " disabled" if slot >= backend.active else ""
            lines.append(f"    server s{slot} 127.0.0.1:{port}{spare}")
        sections.append("\n".join(lines))
    return Template(template.read_text()).substitute(
        services="\n\n".join(sections) + "\n", host=host, stats_socket=str(stats_socket), stats_port=stats_port)


def haproxy_binary(configured: str) -> str | None:
    return shutil.which(configured) or shutil.which(configured, path="/usr/sbin:/usr/local/sbin")


def check_config(binary: str, config: Path) -> None:
    result = subprocess.run([binary, "-c", "-q", "-f", str(config)], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise ValueError(f"HAProxy refuses {config}: {result.stderr.strip() or result.stdout.strip()}")


class RuntimeApi:
    """The HAProxy runtime API (stats socket, admin level)."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def command(self, line: str, timeout: float = 5.0) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def set_state(self, server: str, state: str) -> None:
        answer = self.command(f"set server {server} state {state}").strip()
        if answer:
            raise RuntimeError(f"haproxy: set server {server} state {state}: {answer}")

    def servers(self) -> dict[str, dict[str, str]]:
        """``{"shop/s0": {"status": "UP", "scur": "0", ...}}`` from ``show stat``."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {f"{r['pxname']}/{r['svname']}": r for r in rows if r["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_for(self, server: str, *, status: str | None = None, idle: bool = False,
                 timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.servers().get(server, {})
            ok_status = status is None or row.get("status", "").startswith(status)
            ok_idle = not idle or (row.get("scur") == "0" and row.get("qcur", "0") in ("0", ""))
            if row and ok_status and ok_idle:
                return True
            time.sleep(0.1)
        return False
