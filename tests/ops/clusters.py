"""Throw-away PostgreSQL clusters for replication and backup tests (never the shared 5432 one)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from alexandrite.ops import pgcluster
from alexandrite.ops.pgcluster import Cluster

VERSION = "15"

needs_postgresql_common = pytest.mark.skipif(
    shutil.which("pg_createcluster") is None, reason="pg_createcluster (Debian postgresql-common) is not installed")


def cluster_name(prefix: str) -> str:
    return f"alextest_{prefix}_{uuid.uuid4().hex[:8]}"


def free_pg_port() -> int:
    return pgcluster.free_port(15500 + uuid.uuid4().int % 20000)


@contextmanager
def own_cluster(prefix: str, settings: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A started cluster on a free port; dropped (with any cluster named after it) at the end."""
    name = cluster_name(prefix)
    cluster = pgcluster.create_cluster(VERSION, name, free_pg_port(), settings)
    try:
        pgcluster.ctl(cluster, "start")
        yield cluster
    finally:
        drop_clusters(name)


def drop_clusters(*names: str) -> None:
    for cluster in pgcluster.clusters():
        if cluster.name in names:
            subprocess.run(["pg_dropcluster", "--stop", cluster.version, cluster.name], capture_output=True,
                           timeout=120)
