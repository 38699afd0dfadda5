"""Local PostgreSQL clusters through Debian's postgresql-common tools (pg_createcluster & co).

``initdb``/``pg_ctl`` refuse to run as root; these wrappers use the Debian tools, which switch
to the cluster owner, and run the rest (pg_basebackup, pgbackrest) as ``postgres``.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

OWNER = "postgres"


@dataclass(frozen=True)
class Cluster:
    version: str
    name: str
    port: int
    status: str
    data_dir: Path

    @property
    def config_dir(self) -> Path:
        return Path("/etc/postgresql") / self.version / self.name


def as_owner(argv: list[str]) -> list[str]:
    """Prefix a command so that it runs as the cluster owner."""
    if os.geteuid() == 0:
        return ["runuser", "-u", OWNER, "--", *argv]
    return argv


def run(argv: list[str], *, timeout: float = 300, owner: bool = False) -> str:
    result = subprocess.run(as_owner(argv) if owner else argv, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-1500:]}")
    return result.stdout


def clusters() -> list[Cluster]:
    found = []
    for line in run(["pg_lsclusters", "-h"]).splitlines():
        parts = line.split()
        if len(parts) >= 6:
            found.append(Cluster(parts[0], parts[1], int(parts[2]), parts[3], Path(parts[5])))
    return found


def find_cluster(*, port: int | None = None, name: str | None = None, version: str | None = None) -> Cluster | None:
    for cluster in clusters():
        if (port is None or cluster.port == port) and (name is None or cluster.name == name) and (
                version is None or cluster.version == version):
            return cluster
    return None


def free_port(start: int) -> int:
    """The first port from ``start`` that nothing listens on and no registered cluster (even a stopped one,
    or one left behind by an interrupted run) claims: ``create_cluster`` refuses a claimed port."""
    from alexandrite.ops.replicas import allocate_ports

    return allocate_ports(start, 1, {cluster.port for cluster in clusters()})[0]


# Same access rules as this machine's main cluster: local connections only, no password.
LOCAL_TRUST_HBA = """local all all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
"""


def create_cluster(version: str, name: str, port: int, settings: dict[str, str] | None = None) -> Cluster:
    """A new, stopped cluster that trusts local connections; ``settings`` go to ``conf.d/alexandrite.conf``."""
    if find_cluster(name=name, version=version) is not None:
        raise ValueError(f"cluster {version}/{name} already exists")
    if find_cluster(port=port) is not None:
        raise ValueError(f"a cluster already uses port {port}")
    run(["pg_createcluster", version, name, "--port", str(port)])
    cluster = find_cluster(name=name, version=version)
    assert cluster is not None
    (cluster.config_dir / "pg_hba.conf").write_text(LOCAL_TRUST_HBA)
    if settings:
        write_conf(cluster, settings)
    return cluster


def write_conf(cluster: Cluster, settings: dict[str, str]) -> None:
    conf_d = cluster.config_dir / "conf.d"
    conf_d.mkdir(exist_ok=True)
    (conf_d / "alexandrite.conf").write_text(
        "".join(f"{key} = '{value}'\n" for key, value in settings.items()))


def append_auto_conf(cluster: Cluster, settings: dict[str, str]) -> None:
    """Later lines win: overrides what a base backup copied from the primary's ALTER SYSTEM."""
    path = cluster.data_dir / "postgresql.auto.conf"
    with path.open("a") as handle:
        for key, value in settings.items():
            handle.write(f"{key} = '{value}'\n")
    chown_to_owner(path)


def chown_to_owner(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam(OWNER)
        os.chown(path, user.pw_uid, user.pw_gid)


def empty_data_dir(cluster: Cluster) -> None:
    for child in cluster.data_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def ctl(cluster: Cluster, action: str, *extra: str) -> None:
    run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster.version, cluster.name, action, *extra], timeout=120)


def drop_cluster(cluster: Cluster) -> None:
    run(["pg_dropcluster", "--stop", cluster.version, cluster.name], timeout=120)


def admin_dsn(port: int, host: str = "127.0.0.1", database: str = "postgres", user: str = OWNER) -> str:
    return f"postgresql://{user}@{host}:{port}/{database}"


def server_dsn(port: int, host: str = "127.0.0.1", user: str = OWNER) -> str:
    """The form Settings.pg_dsn / pg_replica_dsn use: a server, no database."""
    return f"postgresql+asyncpg://{user}@{host}:{port}"


def plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def host_port(server_url: str) -> tuple[str, int]:
    parts = urlsplit(plain(server_url))
    return parts.hostname or "127.0.0.1", parts.port or 5432


async def connect(server_url: str, database: str = "postgres", timeout: float = 10) -> asyncpg.Connection:
    return await asyncpg.connect(f"{plain(server_url).rstrip('/')}/{database}", timeout=timeout)


async def wait_until(server_url: str, query: str, expected: object, timeout: float = 60) -> None:
    """Poll ``query`` (first value) on the server until it returns ``expected``."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: object = None
    while True:
        try:
            conn = await connect(server_url, timeout=5)
            try:
                last = await conn.fetchval(query)
            finally:
                await conn.close()
            if last == expected:
                return
        except (OSError, asyncpg.PostgresError) as error:
            last = error
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{query!r} on {server_url} gave {last!r}, not {expected!r}")
        await asyncio.sleep(0.3)


def update_env_file(path: Path, values: dict[str, str | None]) -> None:
    """Set (or, with None, remove) ``KEY=value`` lines of a dotenv file, keeping the rest."""
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if line.split("=", 1)[0].strip() not in values]
    kept += [f"{key}={value}" for key, value in values.items() if value is not None]
    path.write_text("\n".join(kept) + "\n")
