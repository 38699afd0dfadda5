"""Where everything of the HA layout lives: one run directory, one port per listener, node names.

The layout is decided once (``HaLayout.allocate``) and saved as ``<run dir>/layout.json``; every
later command (restart a node, ``ha status``, ``ha down``, the failover drill) loads it from there.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alexandrite.ops.replicas import allocate_ports

LAYOUT_FILE = "layout.json"
REDIS_MASTER_NAME = "alexandrite"


@dataclass(frozen=True)
class EtcdMember:
    name: str
    client_port: int
    peer_port: int

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


@dataclass(frozen=True)
class PgNode:
    name: str
    port: int  # PostgreSQL
    rest_port: int  # Patroni REST API (health checks, /cluster)


@dataclass(frozen=True)
class RabbitNode:
    name: str
    amqp_port: int
    dist_port: int

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"


@dataclass(frozen=True)
class RedisNode:
    name: str
    port: int


@dataclass(frozen=True)
class HaLayout:
    root: Path
    token: str  # keeps node names, the Patroni scope and the etcd cluster apart from other layouts
    etcd: tuple[EtcdMember, ...]
    postgres: tuple[PgNode, ...]
    pg_write_port: int  # HAProxy -> the Patroni leader
    pg_read_port: int  # HAProxy -> a replica within the lag limit (the leader when none is)
    pg_lb_stats_port: int
    rabbit: tuple[RabbitNode, ...]
    redis: tuple[RedisNode, ...]  # the first starts as master
    sentinels: tuple[RedisNode, ...]
    cookie: str  # Erlang cookie of the RabbitMQ cluster

    @classmethod
    def allocate(cls, root: Path, base_port: int, token: str | None = None) -> HaLayout:
        """Free ports from ``base_port`` up for three etcd members, two PostgreSQL nodes, their balancer,
        three RabbitMQ nodes, Redis master + replica and three sentinels."""
        token = token or secrets.token_hex(3)
        ports = iter(allocate_ports(base_port, 24))
        return cls(
            root=Path(root).resolve(),
            token=token,
            etcd=tuple(EtcdMember(f"etcd{i}", next(ports), next(ports)) for i in (1, 2, 3)),
            postgres=tuple(PgNode(f"pg{i}", next(ports), next(ports)) for i in (1, 2)),
            pg_write_port=next(ports),
            pg_read_port=next(ports),
            pg_lb_stats_port=next(ports),
            rabbit=tuple(RabbitNode(f"alexha{i}_{token}", next(ports), next(ports)) for i in (1, 2, 3)),
            redis=tuple(RedisNode(f"redis{i}", next(ports)) for i in (1, 2)),
            sentinels=tuple(RedisNode(f"sentinel{i}", next(ports)) for i in (1, 2, 3)),
            cookie=secrets.token_hex(16).upper(),
        )

    # --- persistence --------------------------------------------------------------------------

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data["root"] = str(self.root)
        path = self.root / LAYOUT_FILE
        path.write_text(json.dumps(data, indent=2) + "\n")
        path.chmod(0o600)  # holds the Erlang cookie

    @classmethod
    def load(cls, root: Path) -> HaLayout:
        path = Path(root) / LAYOUT_FILE
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError as error:
            raise LookupError(f"no HA layout in {root} ({LAYOUT_FILE} missing)") from error
        return cls(
            root=Path(data["root"]), token=data["token"],
            etcd=tuple(EtcdMember(**m) for m in data["etcd"]),
            postgres=tuple(PgNode(**n) for n in data["postgres"]),
            pg_write_port=data["pg_write_port"], pg_read_port=data["pg_read_port"],
            pg_lb_stats_port=data["pg_lb_stats_port"],
            rabbit=tuple(RabbitNode(**n) for n in data["rabbit"]),
            redis=tuple(RedisNode(**n) for n in data["redis"]),
            sentinels=tuple(RedisNode(**n) for n in data["sentinels"]),
            cookie=data["cookie"],
        )

    # --- what clients are given -----------------------------------------------------------------

    @property
    def scope(self) -> str:
        """Patroni cluster name (its keys in etcd live under /alexandrite/<scope>/)."""
        return f"alexandrite-{self.token}"

    @property
    def pg_dsn(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.pg_write_port}"

    @property
    def pg_replica_dsn(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.pg_read_port}"

    def amqp_url(self, vhost: str = "/") -> str:
        path = "" if vhost == "/" else vhost
        return ",".join(f"amqp://guest:guest@127.0.0.1:{n.amqp_port}/{path}" for n in self.rabbit)

    @property
    def redis_sentinels(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def platform_env(self, vhost: str = "/") -> dict[str, str]:
        """``ALEX_*`` variables that point a platform process at this layout."""
        return {
            "ALEX_PG_DSN": self.pg_dsn,
            "ALEX_PG_REPLICA_DSN": self.pg_replica_dsn,
            "ALEX_AMQP_URL": self.amqp_url(vhost),
            "ALEX_REDIS_URL": f"redis://127.0.0.1:{self.redis[0].port}/0",
            "ALEX_REDIS_SENTINELS": self.redis_sentinels,
            "ALEX_REDIS_SENTINEL_MASTER": REDIS_MASTER_NAME,
        }

    def settings_update(self, vhost: str = "/") -> dict[str, Any]:
        """The same as ``platform_env``, for ``Settings.replace(**...)``."""
        return {"pg_dsn": self.pg_dsn, "pg_replica_dsn": self.pg_replica_dsn, "amqp_url": self.amqp_url(vhost),
                "redis_url": f"redis://127.0.0.1:{self.redis[0].port}/0", "redis_sentinels": self.redis_sentinels,
                "redis_sentinel_master": REDIS_MASTER_NAME}
