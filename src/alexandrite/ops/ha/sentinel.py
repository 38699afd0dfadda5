"""Redis with Sentinel: a master, a replica and three sentinels, all on their own ports.

Throttling counters, the page cache and shared breaker state are all rebuildable, so Redis runs
without persistence (``--save "" --appendonly no``): a failover may lose the last writes, which
costs at most a few requests let through or a cache refill from the database. Two of the three
sentinels must agree the master is down (1.5 s without an answer) before they promote the
replica; a former master started again is turned into a replica of the new one by the sentinels.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from alexandrite.ops.ha.layout import REDIS_MASTER_NAME, HaLayout, RedisNode
from alexandrite.ops.ha.processes import Daemon, wait_until

DOWN_AFTER_MS = 1500
FAILOVER_TIMEOUT_MS = 10000

SENTINEL_CONFIG = """# alexandrite.ops.ha.sentinel (the sentinel rewrites this file with what it learns)
port {port}
bind 127.0.0.1
protected-mode no
dir {dir}
sentinel resolve-hostnames no
sentinel monitor {name} 127.0.0.1 {master_port} 2
sentinel down-after-milliseconds {name} {down_after}
sentinel failover-timeout {name} {failover_timeout}
sentinel parallel-syncs {name} 1
"""


def _binary(name: str, package: str) -> str:
    binary = shutil.which(name)
    if binary is None:
        raise OSError(f"{name} not found; install the Debian package {package}")
    return binary


class RedisSentinelGroup:
    def __init__(self, layout: HaLayout) -> None:
        self.layout = layout
        self.server = _binary("redis-server", "redis-server")
        self.sentinel = _binary("redis-sentinel", "redis-sentinel")
        self.cli = _binary("redis-cli", "redis-tools")
        self.nodes = {n.name: n for n in layout.redis}
        master, replica = layout.redis
        self.daemons = {master.name: self._server(master), replica.name: self._server(replica, master.port)}
        self.daemons.update({s.name: Daemon(f"redis-{s.name}", [self.sentinel, str(self._sentinel_config(s))],
                                            layout.root) for s in layout.sentinels})

    def _dir(self, node: RedisNode) -> Path:
        return self.layout.root / "redis" / node.name

    def _sentinel_config(self, sentinel: RedisNode) -> Path:
        return self._dir(sentinel) / "sentinel.conf"

    def _server(self, node: RedisNode, replica_of: int | None = None) -> Daemon:
        argv = [self.server, "--port", str(node.port), "--bind", "127.0.0.1", "--dir", str(self._dir(node)),
                "--save", "", "--appendonly", "no", "--daemonize", "no"]
        if replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        return Daemon(f"redis-{node.name}", argv, self.layout.root)

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        master, replica = self.layout.redis
        for node in (*self.layout.redis, *self.layout.sentinels):
            self._dir(node).mkdir(parents=True, exist_ok=True)
        for sentinel in self.layout.sentinels:
            self._sentinel_config(sentinel).write_text(SENTINEL_CONFIG.format(
                port=sentinel.port, dir=self._dir(sentinel), name=REDIS_MASTER_NAME, master_port=master.port,
                down_after=DOWN_AFTER_MS, failover_timeout=FAILOVER_TIMEOUT_MS))
        for daemon in self.daemons.values():
            if not daemon.running():
                daemon.start()
        wait_until(lambda: all(d.alive() for d in self.daemons.values()) and self.role(replica) == "slave"
                   and self.link_up(replica), timeout=timeout,
                   what="the Redis replica in sync with its master")
        wait_until(lambda: all(self.sentinel_view(s) == (master.port, 1, 2) for s in self.layout.sentinels),
                   timeout=timeout, what="three sentinels watching the master, its replica and each other")

    def kill(self, name: str) -> None:
        self.daemons[name].kill()

    def start_node(self, name: str) -> None:
        """Start a Redis server again as it was first started; the sentinels fix its role."""
        self.daemons[name].start()

    def stop(self) -> None:
        for daemon in self.daemons.values():
            daemon.stop(timeout=10)

    # --- state --------------------------------------------------------------------------------

    def command(self, port: int, *args: str) -> str:
        result = subprocess.run([self.cli, "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True,
                                text=True, timeout=10)
        if result.returncode != 0 or result.stdout.startswith("ERR") or "Could not connect" in result.stdout:
            raise RuntimeError(f"redis-cli -p {port} {' '.join(args)}: {(result.stderr or result.stdout).strip()}")
        return result.stdout.strip()

    def info(self, port: int, section: str) -> dict[str, str]:
        lines = self.command(port, "INFO", section).splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith("#"))

    def role(self, node: RedisNode) -> str | None:
        try:
            return self.info(node.port, "replication").get("role")
        except (RuntimeError, subprocess.TimeoutExpired):
            return None

    def link_up(self, node: RedisNode) -> bool:
        return self.info(node.port, "replication").get("master_link_status") == "up"

    def master(self) -> RedisNode | None:
        """The master as the sentinels report it (the first sentinel that answers)."""
        for sentinel in self.layout.sentinels:
            try:
                host_port = self.command(sentinel.port, "SENTINEL", "get-master-addr-by-name", REDIS_MASTER_NAME)
            except (RuntimeError, subprocess.TimeoutExpired):
                continue
            lines = host_port.splitlines()
            if len(lines) == 2 and lines[1].isdigit():
                return next((n for n in self.layout.redis if n.port == int(lines[1])), None)
        return None

    def sentinel_view(self, sentinel: RedisNode) -> tuple[int, int, int] | None:
        """(master port, replicas known, other sentinels known) as one sentinel sees them."""
        try:
            info = self.info(sentinel.port, "sentinel")
        except (RuntimeError, subprocess.TimeoutExpired):
            return None
        line = info.get("master0", "")
        fields = dict(part.split("=", 1) for part in line.split(",") if "=" in part)
        if fields.get("name") != REDIS_MASTER_NAME or fields.get("status") != "ok":
            return None
        port = int(fields.get("address", ":0").rsplit(":", 1)[1])
        return port, int(fields.get("slaves", 0)), int(fields.get("sentinels", 1)) - 1
