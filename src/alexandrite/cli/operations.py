"""Operations: ``restart`` (rolling), ``replica``, ``backup``, ``rabbitmq`` definitions."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from alexandrite.cli.common import Subparsers, fail, guarded, port
from alexandrite.kit.settings import Settings

# --- rolling restart ----------------------------------------------------------------------

def cmd_restart(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.ops.replicas import request_restart

    try:
        status = request_restart(Path(args.run_dir or settings.ops.run_dir), timeout=args.timeout)
    except LookupError as error:
        return fail(str(error), 1)
    except (RuntimeError, TimeoutError) as error:
        return fail(f"rolling restart failed: {error}", 1)
    instances: dict[str, list[dict[str, int]]] = status["instances"]  # type: ignore[assignment]
    print(f"rolling restart {status['generation']} done: "
          + ", ".join(f"{s} on {[i['port'] for i in v]}" for s, v in instances.items()))
    return 0


# --- replication --------------------------------------------------------------------------

def cmd_replica(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.ops import pgcluster, replication

    if args.replica_command == "create":
        standby = asyncio.run(replication.create_standby(
            settings.db.dsn, version=settings.ops.pg_version, name=args.name, port=args.port,
            user=settings.ops.replication_user, sync=args.sync, sync_mode=args.sync_mode))
        print(f"standby {standby.cluster.version}/{standby.cluster.name} streaming on port {args.port}"
              f" ({'synchronous' if standby.sync else 'asynchronous'} commit)")
        if args.env_file:
            pgcluster.update_env_file(Path(args.env_file), {"ALEX_PG_REPLICA_DSN": standby.dsn})
            print(f"wrote ALEX_PG_REPLICA_DSN={standby.dsn} to {args.env_file}")
        else:
            print(f"lag-tolerant reads: ALEX_PG_REPLICA_DSN={standby.dsn}")
        return 0
    if args.replica_command == "promote":
        dsn = pgcluster.server_dsn(args.port)
        started = time.monotonic()
        asyncio.run(replication.promote(dsn))
        print(f"promoted the standby on port {args.port} in {time.monotonic() - started:.2f} s; "
              "it is the primary now")
        if args.env_file:
            pgcluster.update_env_file(Path(args.env_file), {"ALEX_PG_DSN": dsn, "ALEX_PG_REPLICA_DSN": None})
            print(f"wrote ALEX_PG_DSN={dsn} to {args.env_file}; `alexandrite restart` repoints running services")
        else:
            print(f"repoint the services: ALEX_PG_DSN={dsn} (unset ALEX_PG_REPLICA_DSN), then `alexandrite restart`")
        return 0
    if args.replica_command == "drop":
        cluster = pgcluster.find_cluster(name=args.name, version=settings.ops.pg_version)
        if cluster is None:
            return fail(f"no cluster {settings.ops.pg_version}/{args.name}", 1)
        _, primary_port = pgcluster.host_port(settings.db.dsn)
        if cluster.port == primary_port:
            return fail("that cluster is the primary (ALEX_PG_DSN); refusing to drop it", 1)

        async def _forget() -> None:
            rows = await replication.primary_status(settings.db.dsn)
            if any(r["application_name"] == args.name and r["sync_state"] == "sync" for r in rows):
                await replication.set_synchronous(settings.db.dsn, None)

        asyncio.run(_forget())
        pgcluster.drop_cluster(cluster)
        asyncio.run(replication.drop_slot(settings.db.dsn, args.name))
        print(f"dropped standby {cluster.version}/{cluster.name} and its replication slot")
        return 0
    if args.replica_command == "status":
        report: dict[str, Any] = {"standbys": asyncio.run(replication.primary_status(settings.db.dsn))}
        if settings.db.replica_dsn:
            report["read_replica"] = asyncio.run(replication.standby_status(settings.db.replica_dsn))
        if args.json:
            print(json.dumps(report, indent=2, default=str))
        else:
            for row in report["standbys"]:
                print(f"{row['application_name']}\t{row['state']}\t{row['sync_state']}\t"
                      f"lag {row['lag_bytes']} bytes / {row['lag_seconds']:.3f} s")
            if "read_replica" in report:
                print(f"read replica: replay delay {report['read_replica']['replay_delay_seconds']:.3f} s")
        return 0
    from alexandrite.ops.replication_metrics import serve_exporter

    port = args.port or settings.ops.replication_metrics_port
    print(f"replication metrics on http://{settings.net.host}:{port}/metrics", flush=True)
    asyncio.run(serve_exporter(settings, port, args.interval))
    return 0


# --- backups ------------------------------------------------------------------------------

def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.ops import backup, pgcluster

    if args.backup_command == "setup":
        for line in asyncio.run(backup.setup(settings, restart=args.restart)):
            print(line)
        return 0
    if args.backup_command == "base":
        print(backup.base_backup(settings, args.type))
        return 0
    if args.backup_command == "info":
        print(backup.PgBackRest(settings).command("info"))
        return 0
    port = args.port or pgcluster.free_port(5500)
    started = time.monotonic()
    report = asyncio.run(backup.restore_drill(settings, port=port, keep=args.keep))
    for line in report.lines():
        print(line)
    print(f"drill took {time.monotonic() - started:.1f} s")
    return 0 if report.ok else 1


# --- RabbitMQ -----------------------------------------------------------------------------

def cmd_rabbitmq(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.ops.rabbitmq_definitions import definitions_json

    text = definitions_json(settings, vhost=args.vhost)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def register(sub: Subparsers) -> None:
    restart = sub.add_parser("restart", help="rolling restart of every API instance of `up --replicas`")
    restart.add_argument("--run-dir", help="run directory of `up` (default: ALEX_RUN_DIR)")
    restart.add_argument("--timeout", type=float, default=600.0)
    restart.set_defaults(func=cmd_restart)

    replica = sub.add_parser("replica", help="PostgreSQL hot standby: create, promote, drop, status, exporter")
    rsub = replica.add_subparsers(dest="replica_command", required=True)
    create = rsub.add_parser("create", help="clone the primary (ALEX_PG_DSN) into a streaming standby cluster")
    create.add_argument("--port", type=port, required=True)
    create.add_argument("--name", default="standby")
    create.add_argument("--sync", action="store_true", help="commits wait for this standby")
    create.add_argument("--sync-mode", default="on", choices=("on", "remote_write", "remote_apply"),
                        help="synchronous_commit with --sync (remote_apply: reads on the standby see every commit)")
    create.add_argument("--env-file", help="write ALEX_PG_REPLICA_DSN into this dotenv file")
    promote = rsub.add_parser("promote", help="promote the standby on PORT (failover)")
    promote.add_argument("--port", type=port, required=True)
    promote.add_argument("--env-file", help="repoint ALEX_PG_DSN in this dotenv file")
    drop = rsub.add_parser("drop", help="stop and delete a standby cluster and its slot")
    drop.add_argument("--name", default="standby")
    status = rsub.add_parser("status", help="standbys of the primary and their lag")
    status.add_argument("--json", action="store_true")
    exporter = rsub.add_parser("exporter", help="serve replication lag metrics for Prometheus")
    exporter.add_argument("--port", type=port, default=None)
    exporter.add_argument("--interval", type=float, default=5.0)
    replica.set_defaults(func=guarded(cmd_replica))

    backup = sub.add_parser("backup", help="pgBackRest base backups, WAL archive and restore drills")
    bsub = backup.add_subparsers(dest="backup_command", required=True)
    bsetup = bsub.add_parser("setup", help="configure pgBackRest and WAL archiving on the primary")
    bsetup.add_argument("--restart", action="store_true", help="restart the primary if archive_mode needs it")
    base = bsub.add_parser("base", help="take a base backup")
    base.add_argument("--type", default="full", choices=("full", "diff", "incr"))
    bsub.add_parser("info", help="list the backups and the WAL archive range")
    drill = bsub.add_parser("restore-drill", help="restore into a fresh cluster and compare every table")
    drill.add_argument("--port", type=port, help="port of the drill cluster (default: first free from 5500)")
    drill.add_argument("--keep", action="store_true", help="leave the restored cluster running")
    backup.set_defaults(func=guarded(cmd_backup))

    rabbit = sub.add_parser("rabbitmq", help="RabbitMQ definitions generated from the code's topology")
    rabbit.add_argument("action", choices=("definitions",))
    rabbit.add_argument("--vhost", default="/")
    rabbit.add_argument("--output", help="file to write (default: stdout)")
    rabbit.set_defaults(func=cmd_rabbitmq)
