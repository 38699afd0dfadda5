"""``alexandrite up --replicas N``: N instances of each API behind HAProxy, rolling restarts on SIGHUP.

Each API keeps its public port (8001-8003), now served by HAProxy; the instances listen on
ports from ``instance_base_port`` up. A rolling restart replaces one instance at a time:
start the new one on a spare slot, wait until HAProxy sees it UP, put the old one in
maintenance, wait until it holds no request, SIGTERM it (uvicorn finishes what it serves).
A crashed instance is started again in its slot. State goes to ``<run_dir>/up.json``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from alexandrite.kit.settings import SERVICES, Settings
from alexandrite.ops.loadbalancer import Backend, RuntimeApi, check_config, haproxy_binary, render_config

STATUS_FILE = "up.json"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def allocate_ports(start: int, count: int, taken: set[int] | None = None) -> list[int]:
    ports: list[int] = []
    port = start
    taken = taken or set()
    while len(ports) < count:
        if port > 65535:
            raise OSError(f"no {count} free ports from {start} up")
        if port not in taken and port_is_free(port):
            ports.append(port)
        port += 1
    return ports


def spawn(argv: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    out = open(log, "ab") if log else None  # noqa: SIM115 - owned by the child
    return subprocess.Popen([sys.executable, "-m", "alexandrite", *argv], env=env, start_new_session=True,
                            stdout=out, stderr=subprocess.STDOUT if out else None)


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class Instance:
    service: str
    slot: int
    port: int
    process: subprocess.Popen[bytes]


@dataclass
class ReplicaSupervisor:
    settings: Settings
    replicas: int
    workers: int
    env: dict[str, str]
    say: Callable[[str], None] = print
    run_dir: Path = field(init=False)
    backends: dict[str, Backend] = field(default_factory=dict)
    instances: dict[str, dict[int, Instance]] = field(default_factory=dict)
    companions: list[subprocess.Popen[bytes]] = field(default_factory=list)
    haproxy: subprocess.Popen[bytes] | None = None
    generation: int = 0
    restart_requested: bool = False
    stopping: bool = False

    def __post_init__(self) -> None:
        self.run_dir = Path(self.settings.ops.run_dir).resolve()
        self.api = RuntimeApi(self.run_dir / "haproxy.sock")
        self.log_dir = self.run_dir / "logs"

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        binary = haproxy_binary(self.settings.ops.haproxy_bin)
        if binary is None:
            raise OSError(f"{self.settings.ops.haproxy_bin} not found; install the Debian package haproxy")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        taken: set[int] = {self.settings.service_port(s) for s in SERVICES}
        stats_port = self.settings.ops.lb_stats_port
        taken.add(stats_port)
        for service in SERVICES:
            ports = allocate_ports(self.settings.ops.instance_base_port, 2 * self.replicas, taken)
            taken.update(ports)
            self.backends[service] = Backend(service, self.settings.service_port(service), tuple(ports),
                                             self.replicas)
            self.instances[service] = {}
        config = self.run_dir / "haproxy.cfg"
        config.write_text(render_config(list(self.backends.values()), host=self.settings.net.host,
                                        stats_socket=self.api.socket_path, stats_port=stats_port))
        check_config(binary, config)
        for service in SERVICES:
            for slot in range(self.replicas):
                self.instances[service][slot] = self._start_instance(service, slot)
        for service in SERVICES:
            for instance in self.instances[service].values():
                if not wait_ready(self._ready_url(instance.port), instance.process, self.settings.ops.lb_start_timeout):
                    raise RuntimeError(f"{service} instance on port {instance.port} did not become ready; "
                                       f"see {self.log_dir}")
        self.haproxy = subprocess.Popen([binary, "-db", "-f", str(config)], start_new_session=True,
                                        stdout=open(self.log_dir / "haproxy.log", "ab"),  # noqa: SIM115
                                        stderr=subprocess.STDOUT)
        for service in SERVICES:
            for slot in self.instances[service]:
                if not self._wait_lb(self.backends[service].server(slot), status="UP"):
                    raise RuntimeError(f"HAProxy never saw {service} slot {slot} UP; see {self.log_dir}")
        if self.settings.db.replica_dsn:  # replication lag for Prometheus
            self.companions.append(spawn(["replica", "exporter"], self.env, self.log_dir / "replica-exporter.log"))
        for index in range(self.workers):
            self.companions.append(spawn(
                ["worker", "--metrics-port", str(self.settings.net.worker_metrics_port + index),
                 "--name", f"worker-{index + 1}"], self.env))
        self._write_status()

    def _wait_lb(self, server: str, **kwargs: object) -> bool:
        deadline = time.monotonic() + 10
        while not self.api.socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.api.wait_for(server, **kwargs)  # type: ignore[arg-type]

    def _ready_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/health/ready"

    def _start_instance(self, service: str, slot: int) -> Instance:
        port = self.backends[service].slot_ports[slot]
        process = spawn(["serve", service, "--port", str(port), "--host", "127.0.0.1"], self.env,
                        self.log_dir / f"{service}-s{slot}.log")
        return Instance(service, slot, port, process)

    def run(self) -> int:
        """Supervise until SIGINT/SIGTERM; SIGHUP asks for a rolling restart of every API instance."""
        code = 0
        while not self.stopping:
            if self.restart_requested:
                self.restart_requested = False
                code = 0 if self.rolling_restart() else code
            if self.haproxy is not None and self.haproxy.poll() is not None:
                self.say(f"haproxy exited with {self.haproxy.returncode}; stopping")
                return 1
            for service, slots in self.instances.items():
                for slot, instance in list(slots.items()):
                    if instance.process.poll() is not None:
                        self.say(f"{service} instance s{slot} exited with {instance.process.returncode}; "
                                 "starting it again")
                        slots[slot] = self._start_instance(service, slot)
                        self._write_status()
            for companion in self.companions:
                if companion.poll() is not None:
                    self.say(f"process {companion.pid} ({companion.args!r}) exited with {companion.returncode}; "
                             "stopping")
                    return 1
            time.sleep(0.3)
        return code

    def rolling_restart(self) -> bool:
        self.say("rolling restart: replacing every API instance, one at a time")
        for service in SERVICES:
            for slot in sorted(self.instances[service]):
                if self.stopping:
                    return False
                if not self._replace(service, slot):
                    self._write_status(error=f"rolling restart stopped at {service} s{slot}")
                    return False
        self.generation += 1
        self._write_status()
        self.say(f"rolling restart {self.generation} done")
        return True

    def _replace(self, service: str, slot: int) -> bool:
        backend = self.backends[service]
        spare = next(s for s in range(len(backend.slot_ports)) if s not in self.instances[service])
        new = self._start_instance(service, spare)
        if not wait_ready(self._ready_url(new.port), new.process, self.settings.ops.lb_start_timeout):
            self.say(f"new {service} instance on port {new.port} never became ready; keeping the old one")
            stop_process(new.process)
            return False
        self.api.set_state(backend.server(spare), "ready")
        if not self.api.wait_for(backend.server(spare), status="UP", timeout=self.settings.ops.lb_start_timeout):
            self.say(f"HAProxy never saw {backend.server(spare)} UP; keeping the old one")
            self.api.set_state(backend.server(spare), "maint")
            stop_process(new.process)
            return False
        self.instances[service][spare] = new
        old = self.instances[service].pop(slot)
        self.api.set_state(backend.server(slot), "maint")  # no new request goes there
        self.api.wait_for(backend.server(slot), idle=True, timeout=self.settings.ops.lb_drain_timeout_seconds)
        stop_process(old.process, timeout=self.settings.ops.lb_drain_timeout_seconds)
        self._write_status()
        return True

    def stop(self) -> None:
        processes = [i.process for slots in self.instances.values() for i in slots.values()]
        processes += self.companions
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        if self.haproxy is not None:
            stop_process(self.haproxy, timeout=10)
        (self.run_dir / STATUS_FILE).unlink(missing_ok=True)

    def _write_status(self, error: str | None = None) -> None:
        status = {
            "pid": os.getpid(),
            "generation": self.generation,
            "error": error,
            "lb": {s: b.public_port for s, b in self.backends.items()},
            "lb_stats_port": self.settings.ops.lb_stats_port,
            "instances": {s: [{"slot": i.slot, "port": i.port, "pid": i.process.pid}
                              for i in sorted(slots.values(), key=lambda i: i.slot)]
                          for s, slots in self.instances.items()},
        }
        path = self.run_dir / STATUS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=2))
        tmp.replace(path)


def read_status(run_dir: Path) -> dict[str, object] | None:
    try:
        return dict(json.loads((Path(run_dir) / STATUS_FILE).read_text()))
    except (OSError, ValueError):
        return None


def request_restart(run_dir: Path, timeout: float = 600.0) -> dict[str, object]:
    """SIGHUP the running ``up --replicas``; wait until its rolling restart finished (or failed)."""
    status = read_status(run_dir)
    if status is None:
        raise LookupError(f"no `alexandrite up --replicas` is running with run dir {run_dir}")
    before = int(status["generation"])  # type: ignore[call-overload]
    try:
        os.kill(int(status["pid"]), signal.SIGHUP)  # type: ignore[call-overload]
    except ProcessLookupError as error:
        raise LookupError(f"process {status['pid']} from {run_dir / STATUS_FILE} is gone") from error
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = read_status(run_dir) or {}
        if int(now.get("generation", before)) > before:  # type: ignore[call-overload]
            return now
        if now.get("error"):
            raise RuntimeError(str(now["error"]))
    raise TimeoutError("the rolling restart did not finish in time")


def run_replicas(settings: Settings, replicas: int, workers: int) -> int:
    supervisor = ReplicaSupervisor(settings, replicas, workers, dict(os.environ),
                                   say=lambda m: print(m, file=sys.stderr, flush=True))

    def _stop(*_: object) -> None:
        supervisor.stopping = True

    def _restart(*_: object) -> None:
        supervisor.restart_requested = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _restart)
    try:
        supervisor.start()
        print(f"\nAlexandrite is running, {replicas} instance(s) of each API behind HAProxy:")
        for service, backend in supervisor.backends.items():
            ports = ", ".join(str(i.port) for i in supervisor.instances[service].values())
            print(f"  {service:5} http://{settings.net.host}:{backend.public_port}  (instances on {ports})")
        print(f"  HAProxy stats http://{settings.net.host}:{settings.ops.lb_stats_port}/stats")
        print(f"`alexandrite restart` (or SIGHUP to {os.getpid()}) restarts every instance, one at a time; "
              "Ctrl-C stops everything.\n", flush=True)
        return supervisor.run()
    except (OSError, RuntimeError, ValueError) as error:
        print(f"alexandrite: {error}", file=sys.stderr)
        return 1
    finally:
        supervisor.stop()
        print("stopped", flush=True)
