"""``alexandrite up --ha``: the HA layout, then the platform on it; Ctrl-C takes all of it down.

1. etcd, Patroni (PostgreSQL leader + synchronous standby) behind HAProxy, a three-node RabbitMQ
   cluster and Redis with Sentinel start under the run directory (``--dir``, default
   ``ALEX_HA_DIR``);
2. the three service databases are created and migrated through the write port, the queues
   declared once all three brokers run (so every quorum queue has a member on each);
3. the APIs (``--replicas N``: N instances each behind HAProxy, else one each) and the pricing
   workers start with the cluster endpoints in their environment;
4. SIGINT/SIGTERM: the platform stops first, then every engine; the run directory is removed
   unless ``--keep`` (a later ``up --ha`` on it starts the kept clusters again). A platform process
   that exits on its own stops everything too, and the run directory is kept for its logs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from alexandrite.kit.settings import SERVICES, Settings
from alexandrite.ops.ha.stack import HaStack
from alexandrite.ops.replicas import ReplicaSupervisor, spawn, stop_process, wait_ready

STATUS_FILE = "up.json"


def migrate(settings: Settings) -> None:
    from alexandrite.kit.messaging.topology import setup_topology
    from alexandrite.kit.migrations import create_databases, upgrade, wait_for_postgres

    asyncio.run(wait_for_postgres(settings))
    asyncio.run(create_databases(settings))
    for service in SERVICES:
        upgrade(service, settings)
    asyncio.run(setup_topology(settings))


class HaUp:
    def __init__(self, settings: Settings, *, workers: int, replicas: int, directory: str | None, keep: bool) -> None:
        self.settings = settings
        self.workers = workers
        self.replicas = replicas
        self.keep = keep
        self.stack = HaStack.open(Path(directory or settings.ops.ha_dir), settings.ops.ha_base_port,
                                  pg_version=settings.ops.pg_version, haproxy_bin=settings.ops.haproxy_bin)
        self.root = self.stack.root
        self.stopping = False
        self.started = False  # a layout that failed to come up keeps its run directory (logs) for a look
        self.failed = False  # so does one whose platform process died on its own
        self.supervisor: ReplicaSupervisor | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def say(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def platform_settings(self) -> Settings:
        return self.settings.replace(**{**self.stack.layout.settings_update(),
                                                "run_dir": self.root / "platform"})

    def platform_env(self) -> dict[str, str]:
        return {**os.environ, **self.stack.layout.platform_env(), "ALEX_RUN_DIR": str(self.root / "platform")}

    def start(self) -> None:
        self.stack.start(self.say)
        settings = self.platform_settings()
        self.say("migrating the service databases through the PostgreSQL write port")
        migrate(settings)
        env = self.platform_env()
        logs = self.root / "platform" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        if self.replicas:
            self.supervisor = ReplicaSupervisor(settings, self.replicas, self.workers, env, say=self.say)
            self.supervisor.start()
        else:
            for service in SERVICES:
                self.processes[service] = spawn(["serve", service], env, logs / f"{service}.log")
            for index in range(self.workers):
                self.processes[f"worker-{index + 1}"] = spawn(
                    ["worker", "--metrics-port", str(settings.net.worker_metrics_port + index),
                     "--name", f"worker-{index + 1}"], env, logs / f"worker-{index + 1}.log")
            for service in SERVICES:
                url = f"http://127.0.0.1:{settings.service_port(service)}/health/ready"
                if not wait_ready(url, self.processes[service], settings.ops.lb_start_timeout):
                    raise RuntimeError(f"{service} did not become ready; see {logs}")
        self.write_status(settings)
        self.started = True

    def write_status(self, settings: Settings) -> None:
        status: dict[str, Any] = {
            "pid": os.getpid(),
            "services": {s: settings.service_url(s) for s in SERVICES},
            "processes": {name: p.pid for name, p in self.processes.items()},
            **self.stack.layout.platform_env(),
        }
        (self.root / STATUS_FILE).write_text(json.dumps(status, indent=2) + "\n")

    def run(self) -> int:
        if self.supervisor is not None:
            return self.supervisor.run()
        while not self.stopping:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    self.say(f"{name} exited with {process.returncode}; stopping")
                    self.failed = True
                    return 1
            time.sleep(0.5)
        return 0

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        for process in self.processes.values():
            stop_process(process, timeout=30)
        (self.root / STATUS_FILE).unlink(missing_ok=True)
        leftovers = self.stack.stop()
        if leftovers:
            self.say(f"stopped by pid file: {', '.join(leftovers)}")
        if self.keep:
            self.say(f"kept {self.root} (`alexandrite up --ha --dir {self.root}` starts it again)")
        elif not self.started or self.failed:
            self.say(f"kept {self.root} for its logs (`alexandrite ha down --dir {self.root}` removes it)")
        else:
            self.stack.remove()

    def request_stop(self, *_: object) -> None:
        self.stopping = True
        if self.supervisor is not None:
            self.supervisor.stopping = True


def run_ha_up(settings: Settings, args: argparse.Namespace) -> int:
    try:
        up = HaUp(settings, workers=args.workers, replicas=args.replicas, directory=args.ha_dir, keep=args.keep)
    except (LookupError, ValueError, OSError) as error:
        print(f"alexandrite: {error}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGINT, up.request_stop)
    signal.signal(signal.SIGTERM, up.request_stop)
    try:
        up.start()
        layout = up.stack.layout
        settings = up.platform_settings()
        print(f"\nAlexandrite is running on the HA layout in {up.root}:")
        for service in SERVICES:
            print(f"  {service:5} {settings.service_url(service)}")
        print(f"  PostgreSQL writes 127.0.0.1:{layout.pg_write_port} (Patroni leader), "
              f"reads 127.0.0.1:{layout.pg_read_port}, HAProxy stats "
              f"http://127.0.0.1:{layout.pg_lb_stats_port}/stats")
        print(f"  RabbitMQ {', '.join(f'{n.node} :{n.amqp_port}' for n in layout.rabbit)}")
        print(f"  Redis sentinels {layout.redis_sentinels} (master name alexandrite)")
        print(f"`alexandrite ha status --dir {up.root}` shows who leads; Ctrl-C stops everything.\n", flush=True)
        return up.run()
    except (OSError, RuntimeError, ValueError, TimeoutError) as error:
        print(f"alexandrite: {error}", file=sys.stderr)
        return 1
    finally:
        up.stop()
        print("stopped", flush=True)
