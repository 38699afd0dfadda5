"""Autogenerate an Alembic revision for one service against a scratch database.

Usage: python scripts/new_migration.py SERVICE "message"
"""

from __future__ import annotations

import asyncio
import sys
import uuid

from alembic import command

from alexandrite.kit.migrations import alembic_config, create_databases, drop_databases
from alexandrite.kit.settings import Settings


def main() -> None:
    service, message = sys.argv[1], sys.argv[2]
    settings = Settings(db_prefix=f"alexscratch_{uuid.uuid4().hex[:8]}")
    asyncio.run(create_databases(settings, (service,)))  # type: ignore[arg-type]
    try:
        config = alembic_config(service, settings)  # type: ignore[arg-type]
        command.upgrade(config, "head")
        command.revision(config, message=message, autogenerate=True)
    finally:
        asyncio.run(drop_databases(settings, (service,)))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
