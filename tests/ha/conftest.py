"""The HA layout for the tests: its own etcd, Patroni/PostgreSQL, RabbitMQ and Redis clusters on free
ports under a temporary directory; every process and file is gone at the end, also after a failure.

Nothing of the machine's own PostgreSQL (5432), RabbitMQ (5672) or Redis (6379) is touched.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from alexandrite.ops.ha.processes import stop_recorded
from alexandrite.ops.ha.stack import HaStack
from tests.chaos.harness import ARTIFACTS

REQUIRED = {
    "etcd": "etcd-server", "patroni": "patroni", "redis-sentinel": "redis-sentinel", "redis-server": "redis-server",
    "redis-cli": "redis-tools", "haproxy": "haproxy",
}
missing = [f"{tool} (Debian {package})" for tool, package in REQUIRED.items()
           if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin") is None]
if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
    missing.append("rabbitmq-server (Debian rabbitmq-server)")
if not Path("/usr/lib/postgresql/15/bin/initdb").exists():
    missing.append("initdb (Debian postgresql-15)")

needs_ha_tools = pytest.mark.skipif(bool(missing), reason="not installed: " + ", ".join(missing))


def free_base_port() -> int:
    """A start for the layout's 24 ports below the ephemeral range (outgoing connections cannot take them)."""
    return 15000 + uuid.uuid4().int % 15000


@pytest.fixture(scope="module")
def ha_stack() -> Iterator[HaStack]:
    root = Path(tempfile.mkdtemp(prefix="alexha-test-"))
    stack: HaStack | None = None
    try:
        stack = HaStack.create(root, free_base_port())
        stack.start(say=lambda message: print(f"\nha: {message}", end=""))
        yield stack
    finally:
        if stack is not None:
            stack.stop()
        stop_recorded(root)
        if (root / "logs").exists():  # every engine's log, for a look after the run
            shutil.copytree(root / "logs", ARTIFACTS / f"{root.name}-logs", dirs_exist_ok=True)
        shutil.rmtree(root, ignore_errors=True)
