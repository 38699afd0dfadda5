"""A three-member etcd cluster on loopback ports: the store Patroni keeps its leader lock in.

Three members tolerate the loss of one. A killed member started again with its data directory
rejoins by itself (the ``--initial-cluster*`` flags only matter on the first start).
"""

from __future__ import annotations

import json
import shutil
import urllib.request

from alexandrite.ops.ha.layout import EtcdMember, HaLayout
from alexandrite.ops.ha.processes import Daemon, wait_until

# Election timing: a little above etcd's defaults (100 ms / 1 s), which can flap on a busy 2-core
# machine; a lost leader is replaced within a few seconds (Patroni's failsafe mode covers the gap).
HEARTBEAT_MS = 150
ELECTION_MS = 1500


def etcd_binary() -> str:
    binary = shutil.which("etcd")
    if binary is None:
        raise OSError("etcd not found; install the Debian package etcd-server")
    return binary


class EtcdCluster:
    def __init__(self, layout: HaLayout) -> None:
        self.layout = layout
        self.members = {m.name: m for m in layout.etcd}
        self.daemons = {m.name: self._daemon(m) for m in layout.etcd}

    def _daemon(self, member: EtcdMember) -> Daemon:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.layout.etcd)
        data_dir = self.layout.root / "etcd" / member.name
        argv = [
            etcd_binary(), "--name", member.name, "--data-dir", str(data_dir),
            "--listen-client-urls", member.client_url, "--advertise-client-urls", member.client_url,
            "--listen-peer-urls", member.peer_url, "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", f"alexandrite-{self.layout.token}",
            "--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS),
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
        ]
        return Daemon(f"etcd-{member.name}", argv, self.layout.root)

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{m.client_port}" for m in self.layout.etcd]

    def start(self, timeout: float = 60) -> None:
        for daemon in self.daemons.values():
            if not daemon.running():
                daemon.start()
        wait_until(lambda: all(d.alive() for d in self.daemons.values())
                   and all(self.healthy(name) for name in self.members), timeout=timeout,
                   what="all three etcd members healthy")

    def healthy(self, name: str) -> bool:
        """The member answers ``/health`` and sees a leader (it is part of a quorum)."""
        try:
            with urllib.request.urlopen(f"{self.members[name].client_url}/health", timeout=2) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def kill(self, name: str) -> None:
        self.daemons[name].kill()

    def start_member(self, name: str, timeout: float = 60) -> None:
        self.daemons[name].start()
        wait_until(lambda: self.healthy(name), timeout=timeout, what=f"etcd member {name} back in the cluster")

    def leader(self) -> str | None:
        """Name of the member that leads the Raft group (None when no member answers)."""
        for member in self.layout.etcd:
            try:
                request = urllib.request.Request(f"{member.client_url}/v3/maintenance/status", data=b"{}",
                                                 method="POST")
                with urllib.request.urlopen(request, timeout=2) as response:
                    status = json.loads(response.read())
            except (OSError, ValueError):
                continue
            leader_id = status.get("leader")
            if leader_id and leader_id == status.get("header", {}).get("member_id"):
                return member.name
        return None

    def stop(self) -> None:
        for daemon in self.daemons.values():
            daemon.stop(timeout=15)
