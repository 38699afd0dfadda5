"""PostgreSQL under Patroni: a leader and a synchronous standby, failover without losing a commit.

- ``synchronous_mode: true``: a commit returns only once the standby has it, and Patroni promotes
  only a standby that was synchronous, so an acknowledged write survives the leader's death.
  The mode is not strict: with the standby gone the leader keeps accepting writes alone (a
  second standby, or ``synchronous_mode_strict``, would close that window at the price of
  stopping writes while no standby is up).
- ``use_pg_rewind: true`` + data checksums: a former leader that comes back is rewound to the new
  timeline and follows as a replica, without a fresh base backup.
- Timing: leader lock TTL 12 s, loop every second; a leader that dies (Patroni and PostgreSQL)
  is replaced once its lock expired, about 12-20 s.
- ``failsafe_mode: true``: while etcd cannot be reached (losing its leader makes it unavailable for
  an election's length), the leader keeps running as primary as long as it reaches the other
  member, instead of demoting itself "because DCS is not accessible".

Patroni runs as the ``postgres`` OS user (``initdb``/``pg_ctl`` refuse root) with its data under
``<run dir>/postgres/<node>``; its configuration is JSON (a subset of YAML), one file per node.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from alexandrite.ops.ha.layout import HaLayout, PgNode
from alexandrite.ops.ha.processes import Daemon, group_alive, signal_group, wait_until

OWNER = "postgres"
REPLICATION_USER = "replicator"
TTL_SECONDS = 12
LOOP_WAIT_SECONDS = 1
RETRY_TIMEOUT_SECONDS = 5  # ttl >= loop_wait + 2 * retry_timeout
# Reads may go to a replica at most this far behind the leader (HAProxy check /replica?lag=...).
READ_LAG_LIMIT = "16MB"


def patroni_binary() -> str:
    binary = shutil.which("patroni")
    if binary is None:
        raise OSError("patroni not found; install the Debian package patroni")
    return binary


def chown_to_owner(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam(OWNER)
        os.chown(path, user.pw_uid, user.pw_gid)


class PatroniCluster:
    def __init__(self, layout: HaLayout, pg_version: str = "15") -> None:
        self.layout = layout
        self.bin_dir = Path(f"/usr/lib/postgresql/{pg_version}/bin")
        self.nodes = {n.name: n for n in layout.postgres}
        self.daemons = {n.name: Daemon(f"patroni-{n.name}", [patroni_binary(), str(self.config_file(n))],
                                       layout.root, user=OWNER, cwd=self.node_dir(n))
                        for n in layout.postgres}

    # --- files --------------------------------------------------------------------------------

    def node_dir(self, node: PgNode) -> Path:
        return self.layout.root / "postgres" / node.name

    def data_dir(self, node: PgNode) -> Path:
        return self.node_dir(node) / "data"

    def config_file(self, node: PgNode) -> Path:
        return self.node_dir(node) / "patroni.yml"

    def config(self, node: PgNode, etcd_endpoints: list[str]) -> dict[str, Any]:
        return {
            "scope": self.layout.scope,
            "namespace": "/alexandrite/",
            "name": node.name,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"127.0.0.1:{node.rest_port}", "connect_address": f"127.0.0.1:{node.rest_port}"},
            "etcd3": {"hosts": etcd_endpoints},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL_SECONDS, "loop_wait": LOOP_WAIT_SECONDS, "retry_timeout": RETRY_TIMEOUT_SECONDS,
                    "maximum_lag_on_failover": 1024 * 1024,
                    "synchronous_mode": True,
                    # etcd unreachable (e.g. electing a new leader): the leader stays primary while it still
                    # reaches every other member, instead of demoting itself.
                    "failsafe_mode": True,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": {
                            "wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on",
                            "max_wal_senders": 10, "max_replication_slots": 10, "wal_keep_size": "256MB",
                            "max_connections": 300, "synchronous_commit": "on",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{node.port}",
                "connect_address": f"127.0.0.1:{node.port}",
                "data_dir": str(self.data_dir(node)),
                "bin_dir": str(self.bin_dir),
                "pgpass": str(self.node_dir(node) / "pgpass"),
                "authentication": {
                    "superuser": {"username": OWNER},
                    "replication": {"username": REPLICATION_USER},
                },
                # Same access rules as this machine's own cluster: local connections, no password.
                "pg_hba": ["local all all trust", "host all all 127.0.0.1/32 trust",
                           "host replication all 127.0.0.1/32 trust"],
                "parameters": {"unix_socket_directories": str(self.node_dir(node))},
                "remove_data_directory_on_rewind_failure": True,
                "remove_data_directory_on_diverged_timelines": True,
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }

    def prepare(self, etcd_endpoints: list[str]) -> None:
        if not (self.bin_dir / "initdb").exists():
            raise OSError(f"{self.bin_dir}/initdb not found; install the Debian package postgresql")
        first = next(iter(self.nodes.values()))
        for directory in (self.layout.root, self.layout.root / "postgres"):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)  # the postgres user must reach its node directories
        for node in self.nodes.values():
            self.node_dir(node).mkdir(mode=0o700, exist_ok=True)
            chown_to_owner(self.node_dir(node))
            self.config_file(node).write_text(json.dumps(self.config(node, etcd_endpoints), indent=2) + "\n")
            chown_to_owner(self.config_file(node))
        if os.geteuid() == 0:  # every directory above the run directory must let the postgres user through
            probe = subprocess.run(["runuser", "-u", OWNER, "--", "test", "-r", str(self.config_file(first))],
                                   capture_output=True, timeout=30)
            if probe.returncode != 0:
                raise OSError(f"the {OWNER} user cannot reach {self.layout.root}: give every directory above it "
                              "o+x, or choose a run directory under /tmp or var/")

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, etcd_endpoints: list[str], timeout: float = 180) -> None:
        """First start: bootstrap the first node as leader, then clone the second. Later starts (a kept
        run directory): start both and let them elect. Either way, wait for a synchronous standby."""
        fresh = not any((self.data_dir(n) / "PG_VERSION").exists() for n in self.nodes.values())
        self.prepare(etcd_endpoints)
        first, *others = self.nodes.values()
        self.daemons[first.name].start()
        if fresh:
            wait_until(lambda: self.daemons[first.name].alive() and self.role(first) == "leader", timeout=timeout,
                       what=f"Patroni {first.name} to bootstrap and lead")
        for node in others:
            self.daemons[node.name].start()
        wait_until(lambda: all(d.alive() for d in self.daemons.values()) and self.leader()
                   and self.synchronous_standby(), timeout=timeout,
                   what="a Patroni leader and a synchronous standby streaming")

    def start_node(self, name: str) -> None:
        self.daemons[name].start()

    def kill(self, name: str) -> None:
        """The node dies: SIGKILL to Patroni and to every PostgreSQL process of that node at once."""
        node = self.nodes[name]
        postgres_group = self.postgres_group(node)
        patroni_group = self.daemons[name].pgid()
        for group in (patroni_group, postgres_group):
            if group is not None:
                signal_group(group, signal.SIGKILL)
        self.daemons[name].kill()
        if postgres_group is not None:
            wait_until(lambda: not group_alive(postgres_group), timeout=20, what=f"PostgreSQL of {name} to die")

    def postgres_group(self, node: PgNode) -> int | None:
        """Process group of the node's postmaster (Patroni starts it in a session of its own)."""
        try:
            pid = int((self.data_dir(node) / "postmaster.pid").read_text().split()[0])
            return os.getpgid(pid)
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, timeout: float = 60) -> None:
        """Patroni stops its PostgreSQL on SIGTERM (fast shutdown); what remains is killed."""
        groups = {name: self.postgres_group(node) for name, node in self.nodes.items()}
        for daemon in self.daemons.values():
            if daemon.running():
                signal_group(daemon.pgid() or 0, signal.SIGTERM)
        for name, daemon in self.daemons.items():
            daemon.stop(timeout=timeout)
            group = groups[name]
            if group is not None and group_alive(group):
                signal_group(group, signal.SIGKILL)

    # --- state --------------------------------------------------------------------------------

    def rest(self, node: PgNode, path: str, timeout: float = 2) -> tuple[int, Any]:
        """(HTTP status, JSON body) of Patroni's REST API on ``node``."""
        url = f"http://127.0.0.1:{node.rest_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            body = error.read()
            try:
                return error.code, json.loads(body or b"null")
            except ValueError:
                return error.code, None

    def cluster(self) -> dict[str, Any]:
        """``/cluster`` as any node that answers sees it: members with role, state, timeline, lag."""
        for node in self.nodes.values():
            try:
                status, body = self.rest(node, "/cluster")
            except (OSError, ValueError):
                continue
            if status == 200 and isinstance(body, dict):
                return body
        return {"members": []}

    def member(self, name: str) -> dict[str, Any]:
        return next((m for m in self.cluster()["members"] if m["name"] == name), {})

    def role(self, node: PgNode) -> str | None:
        """``leader`` / ``sync_standby`` / ``replica`` as the cluster sees the node, None when it is not up."""
        member = self.member(node.name)
        return str(member["role"]) if member.get("state") in ("running", "streaming") else None

    def leader(self) -> PgNode | None:
        """The node whose Patroni says it is the primary (what HAProxy's write check asks)."""
        for node in self.nodes.values():
            try:
                if self.rest(node, "/primary")[0] == 200:
                    return node
            except (OSError, ValueError):
                continue
        return None

    def synchronous_standby(self) -> str | None:
        member = next((m for m in self.cluster()["members"]
                       if m["role"] == "sync_standby" and m.get("state") in ("running", "streaming")), None)
        return str(member["name"]) if member else None

    def timeline(self, node: PgNode) -> int | None:
        member = self.member(node.name)
        return int(member["timeline"]) if member.get("timeline") is not None else None
