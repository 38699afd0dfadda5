"""``contract export|check|release|breaking``: the committed API and event descriptions (contracts/)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from alexandrite.cli.common import Subparsers, fail
from alexandrite.kit.settings import Settings


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.devtools.contract_docs import generate, write

    for path in write(Path(args.dir), generate(settings)):
        print(path)
    return 0


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.devtools.contract_docs import generate, stale

    out_of_date = stale(Path(args.dir), generate(settings))
    if out_of_date:
        return fail(f"not what the code generates: {', '.join(out_of_date)}; run 'alexandrite contract export'", 1)
    print("contract documents are up to date")
    return 0


def cmd_release(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.devtools.contract_docs import RELEASED, generate, write

    for path in write(Path(args.dir) / RELEASED, generate(settings)):
        print(path)
    return 0


def _pairs(old: Path, new: Path | None, settings: Settings) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    from alexandrite.devtools.contract_docs import generate, load

    if old.is_file():
        if new is None:
            raise ValueError("give NEW with a file OLD")
        return [(str(new), load(old), load(new))]
    current = {name: load(new / name) for name in _names(new)} if new is not None else generate(settings)
    return [(name, load(old / name), document) for name, document in current.items() if (old / name).is_file()]


def _names(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.json") if "released" not in p.parts)


def cmd_breaking(settings: Settings, args: argparse.Namespace) -> int:
    from alexandrite.devtools.contract_diff import breaking_changes

    old = Path(args.old)
    if not old.exists():
        return fail(f"{old} does not exist")
    try:
        pairs = _pairs(old, Path(args.new) if args.new else None, settings)
    except ValueError as error:
        return fail(str(error))
    found = 0
    for name, before, after in pairs:
        for change in breaking_changes(before, after):
            print(f"{name}: {change}")
            found += 1
    if found:
        return fail(f"{found} breaking change(s) against {old}", 1)
    print(f"no breaking changes against {old} ({len(pairs)} document(s))")
    return 0


def register(sub: Subparsers) -> None:
    contract = sub.add_parser("contract", help="the public API and event descriptions (contracts/)")
    actions = contract.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export", help="write the OpenAPI and AsyncAPI documents the code generates")
    export.add_argument("--dir", default="contracts")
    export.set_defaults(func=cmd_export)
    check = actions.add_parser("check", help="fail when the committed documents differ from the code's")
    check.add_argument("--dir", default="contracts")
    check.set_defaults(func=cmd_check)
    release = actions.add_parser("release", help="record the current documents as the last released contract")
    release.add_argument("--dir", default="contracts")
    release.set_defaults(func=cmd_release)
    breaking = actions.add_parser("breaking", help="breaking changes of NEW (default: the code now) against OLD")
    breaking.add_argument("old", nargs="?", default="contracts/released",
                          help="a document, or a folder of them (default contracts/released)")
    breaking.add_argument("new", nargs="?", help="a document or a folder; default: what the code generates")
    breaking.set_defaults(func=cmd_breaking)
