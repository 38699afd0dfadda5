"""High availability on one machine: the ``--ha`` options of ``up``, and ``ha status|down`` to look at, or take
down, the layout of a run directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from alexandrite.cli.common import Subparsers, fail
from alexandrite.kit.settings import Settings


def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--ha`` options of ``alexandrite up`` (run by ``alexandrite.ops.ha.up``)."""
    parser.add_argument("--ha", action="store_true",
                        help="run on clusters: Patroni/PostgreSQL + etcd, RabbitMQ x3, Redis + Sentinel (ops/ha)")
    parser.add_argument("--dir", dest="ha_dir", help="with --ha: run directory (default: ALEX_HA_DIR)")
    parser.add_argument("--keep", action="store_true", help="with --ha: keep the run directory when stopping")


def cmd_ha(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.ops.ha.layout import LAYOUT_FILE
    from alexandrite.ops.ha.processes import stop_recorded
    from alexandrite.ops.ha.stack import HaStack

    root = Path(args.dir or settings.ops.ha_dir).resolve()
    if args.ha_command == "down":
        if not (root / LAYOUT_FILE).exists():
            stopped = stop_recorded(root)  # a layout that never got as far as saving itself
            print(f"no HA layout in {root}" + (f"; stopped {', '.join(stopped)}" if stopped else ""))
            return 0
        stack = HaStack.attach(root, pg_version=settings.ops.pg_version, haproxy_bin=settings.ops.haproxy_bin)
        running = stack.running()
        leftovers = stack.stop()
        print(f"stopped {', '.join(running) or 'nothing (none was running)'}"
              + (f" (and by pid file: {', '.join(leftovers)})" if leftovers else ""))
        if not args.keep:
            stack.remove()
            print(f"removed {root}")
        return 0
    try:
        stack = HaStack.attach(root, pg_version=settings.ops.pg_version, haproxy_bin=settings.ops.haproxy_bin)
    except LookupError as error:
        return fail(str(error), 1)
    status = stack.status()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    for line in format_status(status):
        print(line)
    return 0


def format_status(status: dict[str, Any]) -> list[str]:
    pg = status["postgres"]
    lines = [f"run directory {status['root']}",
             "etcd       " + ", ".join(f"{name} {state}" for name, state in status["etcd"].items()),
             f"postgres   leader {pg['leader'] or 'NONE'}, HAProxy writes to {pg['writes_routed_to'] or 'NONE'}"]
    for member in pg["members"]:
        lines.append(f"           {member['name']}: {member['role']} {member['state']} timeline "
                     f"{member.get('timeline')} lag {member.get('lag', 0)}")
    lines.append("rabbitmq   running " + (", ".join(status["rabbitmq"]["running_nodes"]) or "NONE"))
    roles = ", ".join(f"{name} {role or 'down'}" for name, role in status["redis"]["roles"].items())
    lines.append(f"redis      master {status['redis']['master'] or 'NONE'} (sentinels); {roles}")
    lines += [f"{key}={value}" for key, value in status["client_settings"].items()]
    return lines


def register(sub: Subparsers) -> None:
    ha = sub.add_parser("ha", help="the HA layout of `up --ha`: status, down")
    hsub = ha.add_subparsers(dest="ha_command", required=True)
    status = hsub.add_parser("status", help="who leads PostgreSQL, which brokers and Redis nodes run")
    status.add_argument("--dir", help="run directory (default: ALEX_HA_DIR)")
    status.add_argument("--json", action="store_true")
    down = hsub.add_parser("down", help="stop every daemon of the layout (also after a crash) and remove it")
    down.add_argument("--dir", help="run directory (default: ALEX_HA_DIR)")
    down.add_argument("--keep", action="store_true", help="keep the run directory (data and logs)")
    ha.set_defaults(func=cmd_ha)
