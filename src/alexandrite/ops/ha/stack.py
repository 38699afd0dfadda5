"""The whole HA layout under one run directory: etcd, Patroni + HAProxy, RabbitMQ cluster, Redis + Sentinel.

``HaStack.create`` decides the layout and saves it; ``HaStack.attach`` loads it again (another
process, ``alexandrite ha status|down``). ``start`` brings every engine up (etcd first, then the
three clusters side by side), ``stop`` takes everything down again, including daemons another
process restarted (they all leave pid files), and ``remove`` deletes the run directory.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from alexandrite.ops.ha.etcd import EtcdCluster
from alexandrite.ops.ha.layout import LAYOUT_FILE, HaLayout
from alexandrite.ops.ha.patroni import PatroniCluster
from alexandrite.ops.ha.pg_balancer import PgBalancer
from alexandrite.ops.ha.processes import stop_recorded
from alexandrite.ops.ha.rabbit_cluster import RabbitCluster
from alexandrite.ops.ha.sentinel import RedisSentinelGroup

Say = Callable[[str], None]


class HaStack:
    def __init__(self, layout: HaLayout, *, pg_version: str = "15", haproxy_bin: str = "haproxy") -> None:
        self.layout = layout
        self.etcd = EtcdCluster(layout)
        self.patroni = PatroniCluster(layout, pg_version)
        self.pg_balancer = PgBalancer(layout, haproxy_bin)
        self.rabbit = RabbitCluster(layout)
        self.redis = RedisSentinelGroup(layout)

    @classmethod
    def create(cls, root: Path, base_port: int, **options: Any) -> HaStack:
        root = Path(root).resolve()
        if (root / LAYOUT_FILE).exists():
            raise ValueError(f"{root} holds an HA layout already: `alexandrite ha down --dir {root}` removes it")
        layout = HaLayout.allocate(root, base_port)
        layout.save()
        return cls(layout, **options)

    @classmethod
    def attach(cls, root: Path, **options: Any) -> HaStack:
        return cls(HaLayout.load(Path(root).resolve()), **options)

    @classmethod
    def open(cls, root: Path, base_port: int, **options: Any) -> HaStack:
        """The layout kept in ``root`` (started again from its data), or a new one."""
        if (Path(root) / LAYOUT_FILE).exists():
            stack = cls.attach(root, **options)
            running = stack.running()
            if running:
                raise ValueError(f"the HA layout in {stack.root} is running ({', '.join(running)}); "
                                 f"`alexandrite ha down --dir {stack.root}` stops it")
            return stack
        return cls.create(root, base_port, **options)

    def running(self) -> list[str]:
        """Names of the daemons of this layout that are running."""
        daemons = [*self.etcd.daemons.values(), *self.patroni.daemons.values(), self.pg_balancer.daemon,
                   *self.rabbit.daemons.values(), *self.redis.daemons.values()]
        return [d.name for d in daemons if d.running()]

    @property
    def root(self) -> Path:
        return self.layout.root

    def start(self, say: Say = lambda _: None) -> None:
        say(f"etcd: three members on {', '.join(self.etcd.endpoints)}")
        self.etcd.start()

        def postgres() -> None:
            self.patroni.start(self.etcd.endpoints)
            self.pg_balancer.start()

        steps = {"PostgreSQL (Patroni)": postgres, "RabbitMQ cluster": self.rabbit.start,
                 "Redis + Sentinel": self.redis.start}
        with ThreadPoolExecutor(max_workers=len(steps)) as pool:
            futures = {name: pool.submit(step) for name, step in steps.items()}
            failures = []
            for name, future in futures.items():
                try:
                    future.result()
                    say(f"{name}: up")
                except Exception as error:
                    failures.append(f"{name}: {error}")
        if failures:
            raise RuntimeError("HA layout did not come up: " + "; ".join(failures) + f" (logs in {self.root}/logs)")

    def stop(self) -> list[str]:
        """Stop every engine (the balancer and Patroni while etcd still answers); returns what was left
        over and stopped by its pid file."""
        for component in (self.pg_balancer, self.patroni, self.rabbit, self.redis, self.etcd):
            try:
                component.stop()
            except (OSError, RuntimeError, subprocess.SubprocessError):
                pass  # whatever is left is stopped by pid file below
        return stop_recorded(self.root)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def status(self) -> dict[str, Any]:
        """What each engine reports now (for ``alexandrite ha status`` and the drill's report)."""
        leader = self.patroni.leader()
        redis_master = self.redis.master()
        try:
            rabbit_nodes: list[str] = self.rabbit.running_nodes(self.layout.rabbit[0])
        except (RuntimeError, subprocess.SubprocessError):
            rabbit_nodes = []
            for node in self.layout.rabbit:
                try:
                    rabbit_nodes = self.rabbit.running_nodes(node)
                    break
                except (RuntimeError, subprocess.SubprocessError):
                    continue
        try:
            write_server = self.pg_balancer.write_server()
        except OSError:
            write_server = None
        return {
            "root": str(self.root),
            "etcd": {name: "healthy" if self.etcd.healthy(name) else "down" for name in self.etcd.members},
            "postgres": {"members": self.patroni.cluster()["members"], "leader": leader.name if leader else None,
                         "writes_routed_to": write_server},
            "rabbitmq": {"running_nodes": sorted(rabbit_nodes)},
            "redis": {"master": redis_master.name if redis_master else None,
                      "roles": {n.name: self.redis.role(n) for n in self.layout.redis}},
            "client_settings": self.layout.platform_env(),
        }
