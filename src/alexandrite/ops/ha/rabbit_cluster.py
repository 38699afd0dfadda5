"""A three-node RabbitMQ cluster on one machine, beside (never touching) the machine's own broker.

Each node has its own name (``alexha1_<token>@localhost``), AMQP and distribution ports, data,
log and config files; they share the machine's epmd and one Erlang cookie of their own (given
to the servers with ``-setcookie`` and to the CLI tools through ``HOME/.erlang.cookie``). The
machine's broker (``rabbit@localhost``) is never stopped, restarted or joined: these nodes are
started from ``/usr/lib/rabbitmq/bin`` with ``RABBITMQ_CONF_ENV_FILE`` of their own, so its
``rabbitmq-env.conf`` does not apply.

Quorum queues: a queue declared while all three nodes run gets a member on each
(``quorum_cluster_size`` is 3); it stays available while two are up. A killed node started again
rejoins by itself and its queue members catch up from the leaders.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from alexandrite.ops.ha.layout import HaLayout, RabbitNode
from alexandrite.ops.ha.processes import Daemon, wait_until

BIN = Path("/usr/lib/rabbitmq/bin")

CONFIG = """# alexandrite.ops.ha.rabbit_cluster
listeners.tcp.default = 127.0.0.1:{amqp_port}
# a node cut off from the majority stops serving rather than diverging
cluster_partition_handling = pause_minority
log.file.level = warning
log.console = false
disk_free_limit.absolute = 100MB
"""


class RabbitCluster:
    def __init__(self, layout: HaLayout) -> None:
        if not (BIN / "rabbitmq-server").exists():
            raise OSError(f"{BIN}/rabbitmq-server not found; install the Debian package rabbitmq-server")
        self.layout = layout
        self.nodes = {n.name: n for n in layout.rabbit}
        self.daemons = {n.name: Daemon(f"rabbit-{n.name.split('_')[0]}", [str(BIN / "rabbitmq-server")],
                                       layout.root, env=self.env(n), cwd=self.node_dir(n))
                        for n in layout.rabbit}

    # --- files and environment ----------------------------------------------------------------

    def node_dir(self, node: RabbitNode) -> Path:
        return self.layout.root / "rabbitmq" / node.name.split("_")[0]

    def env(self, node: RabbitNode) -> dict[str, str]:
        base = self.node_dir(node)
        return {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(base / "home"),  # .erlang.cookie for the CLI tools
            "RABBITMQ_NODENAME": node.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            # One cookie for the cluster; distribution on loopback only; schedulers sleep instead of
            # spinning when idle (three nodes share the machine's cores with everything else).
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                f"-setcookie {self.layout.cookie} -kernel inet_dist_use_interface {{127,0,0,1}} "
                "+sbwt none +sbwtdcpu none +sbwtdio none",
        }

    def prepare(self) -> None:
        for node in self.nodes.values():
            base = self.node_dir(node)
            for sub in ("mnesia", "log", "home"):
                (base / sub).mkdir(parents=True, exist_ok=True)
            (base / "rabbitmq.conf").write_text(CONFIG.format(amqp_port=node.amqp_port))
            (base / "enabled_plugins").write_text("[].\n")
            (base / "rabbitmq-env.conf").write_text("# the machine's /etc/rabbitmq/rabbitmq-env.conf does not apply\n")
            cookie = base / "home" / ".erlang.cookie"
            cookie.write_text(self.layout.cookie)
            cookie.chmod(0o600)

    # --- CLI tools ----------------------------------------------------------------------------

    def ctl(self, node: RabbitNode, *args: str, tool: str = "rabbitmqctl", timeout: float = 120) -> str:
        result = subprocess.run([str(BIN / tool), "-n", node.node, *args], env=self.env(node), capture_output=True,
                                text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args[:2])} on {node.node} failed ({result.returncode}): "
                               f"{(result.stderr or result.stdout).strip()[-800:]}")
        return result.stdout

    def ctl_any(self, *args: str, tool: str = "rabbitmqctl", timeout: float = 60) -> str:
        """Run a CLI command against the first running node that answers."""
        failure: Exception | None = None
        for node in self.nodes.values():
            if not self.daemons[node.name].running():
                continue
            try:
                return self.ctl(node, *args, tool=tool, timeout=timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                failure = error
        raise RuntimeError(f"no RabbitMQ node answered `{tool} {' '.join(args)}`: {failure}")

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 180) -> None:
        """Start the three nodes, join the second and third to the first, check all three run."""
        self.prepare()
        for daemon in self.daemons.values():
            if not daemon.running():
                daemon.start()
        first, *others = self.nodes.values()
        for node in self.nodes.values():
            self.await_startup(node, timeout)
        for node in others:
            if first.node not in self.running_nodes(node):
                self.ctl(node, "stop_app")
                self.ctl(node, "join_cluster", first.node)
                self.ctl(node, "start_app")
        wait_until(lambda: len(self.running_nodes(first)) == len(self.nodes), timeout=timeout,
                   what="all three RabbitMQ nodes running in one cluster")

    def await_startup(self, node: RabbitNode, timeout: float = 180) -> None:
        daemon = self.daemons[node.name]
        wait_until(lambda: daemon.alive() and self._booted(node), timeout=timeout,
                   what=f"RabbitMQ node {node.node} to boot (log: {daemon.log})", interval=1.0)

    def _booted(self, node: RabbitNode) -> bool:
        try:
            self.ctl(node, "await_startup", "--timeout", "5", timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def running_nodes(self, node: RabbitNode) -> list[str]:
        status = json.loads(self.ctl(node, "cluster_status", "--formatter", "json", timeout=60))
        return list(status.get("running_nodes", []))

    def kill(self, name: str) -> None:
        self.daemons[name].kill()

    def start_node(self, name: str, timeout: float = 180) -> None:
        self.daemons[name].start()
        self.await_startup(self.nodes[name], timeout)

    def stop(self) -> None:
        for daemon in self.daemons.values():
            daemon.stop(timeout=30)

    # --- virtual hosts and queues ---------------------------------------------------------------

    def add_vhost(self, vhost: str) -> None:
        self.ctl_any("add_vhost", vhost)
        self.ctl_any("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")

    def delete_vhost(self, vhost: str) -> None:
        self.ctl_any("delete_vhost", vhost)

    def queues(self, vhost: str = "/") -> dict[str, dict[str, Any]]:
        """``{queue: {"type", "leader", "members", "online", "messages"}}`` as the cluster reports them."""
        text = self.ctl_any("list_queues", "-p", vhost, "name", "type", "leader", "members", "online", "messages",
                            "--formatter", "json")
        return {q["name"]: q for q in json.loads(text)}

    def queue_leader(self, queue: str, vhost: str = "/") -> str:
        """Name (as in the layout) of the node leading ``queue``'s Raft group."""
        leader = self.queues(vhost)[queue]["leader"]
        return next(name for name, node in self.nodes.items() if node.node == leader)

    def quorum_status(self, queue: str, vhost: str = "/") -> list[dict[str, Any]]:
        """Per member: ``Node Name``, ``Raft State``, ``Log Index``, ``Commit Index``, ``Term`` (rabbitmq-queues)."""
        text = self.ctl_any("quorum_status", queue, "-p", vhost, "--formatter", "json", tool="rabbitmq-queues")
        return list(json.loads(text))

    def members_in_sync(self, queue: str, vhost: str = "/") -> bool:
        """Every member of ``queue`` is up (one leader, the rest followers) and has the leader's whole
        committed log (in a quiet moment: equal commit indexes, every log at least that long)."""
        members = self.quorum_status(queue, vhost)
        if len(members) != len(self.nodes):
            return False
        states = [str(m.get("Raft State")) for m in members]
        if states.count("leader") != 1 or any(s not in ("leader", "follower") for s in states):
            return False
        commits = {int(m["Commit Index"]) for m in members if str(m.get("Commit Index")).isdigit()}
        if len(commits) != 1:
            return False
        commit = commits.pop()
        return all(str(m.get("Log Index")).isdigit() and int(m["Log Index"]) >= commit for m in members)
