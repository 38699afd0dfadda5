"""HAProxy in front of the Patroni nodes: one port for writes, one for lag-tolerant reads.

Each server is checked through Patroni's REST API, not PostgreSQL: ``OPTIONS /primary`` answers
200 only on the node holding the leader lock, ``OPTIONS /replica?lag=...`` only on a running
replica within the lag limit. A server marked down has its sessions cut
(``on-marked-down shutdown-sessions``), so no client keeps writing to a former leader. When no
replica qualifies, reads go through the write port to the leader (a backup server).
"""

from __future__ import annotations

from alexandrite.ops.ha.layout import HaLayout
from alexandrite.ops.ha.patroni import READ_LAG_LIMIT
from alexandrite.ops.ha.processes import Daemon, port_open, wait_until
from alexandrite.ops.loadbalancer import RuntimeApi, check_config, haproxy_binary


def render_config(layout: HaLayout) -> str:
    servers = [f"    server {n.name} 127.0.0.1:{n.port} check port {n.rest_port}" for n in layout.postgres]
    socket = layout.root / "haproxy-pg.sock"
    lines = [
        "# PostgreSQL behind Patroni (rendered by alexandrite.ops.ha.pg_balancer)",
        "global",
        "    maxconn 2000",
        f"    stats socket {socket} mode 600 level admin",
        "",
        "defaults",
        "    mode tcp",
        "    timeout connect 2s",
        "    timeout client 30m",
        "    timeout server 30m",
        "    timeout check 2s",
        "    default-server inter 1s fastinter 500ms downinter 1s rise 1 fall 2 on-marked-down shutdown-sessions",
        "",
        "listen stats",
        "    mode http",
        f"    bind 127.0.0.1:{layout.pg_lb_stats_port}",
        "    stats enable",
        "    stats uri /stats",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "",
        "listen pg_write",
        f"    bind 127.0.0.1:{layout.pg_write_port}",
        "    option httpchk OPTIONS /primary",
        "    http-check expect status 200",
        *servers,
        "",
        "listen pg_read",
        f"    bind 127.0.0.1:{layout.pg_read_port}",
        "    balance leastconn",
        f"    option httpchk OPTIONS /replica?lag={READ_LAG_LIMIT}",
        "    http-check expect status 200",
        *servers,
        f"    server via_leader 127.0.0.1:{layout.pg_write_port} backup",
        "",
    ]
    return "\n".join(lines)


class PgBalancer:
    def __init__(self, layout: HaLayout, haproxy_bin: str = "haproxy") -> None:
        binary = haproxy_binary(haproxy_bin)
        if binary is None:
            raise OSError(f"{haproxy_bin} not found; install the Debian package haproxy")
        self.binary = binary
        self.layout = layout
        self.config = layout.root / "haproxy-pg.cfg"
        self.api = RuntimeApi(layout.root / "haproxy-pg.sock")
        self.daemon = Daemon("haproxy-pg", [binary, "-db", "-f", str(self.config)], layout.root)

    def start(self, timeout: float = 30) -> None:
        self.config.write_text(render_config(self.layout))
        check_config(self.binary, self.config)
        self.daemon.start()
        wait_until(lambda: self.daemon.alive() and port_open(self.layout.pg_write_port)
                   and self.write_server() is not None,
                   timeout=timeout, what="HAProxy to route writes to the Patroni leader")

    def servers(self) -> dict[str, dict[str, str]]:
        return self.api.servers()

    def write_server(self) -> str | None:
        """The node HAProxy sends writes to right now (None: no leader UP)."""
        up = [name.split("/", 1)[1] for name, row in self.servers().items()
              if name.startswith("pg_write/") and row.get("status", "").startswith("UP")]
        return up[0] if len(up) == 1 else None

    def stop(self) -> None:
        self.daemon.stop(timeout=10)
