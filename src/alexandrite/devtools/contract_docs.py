"""The committed contract: each service's OpenAPI and the events' AsyncAPI, as files under ``contracts/``.

``contracts/openapi/{shop,crm,mes}.json`` and ``contracts/asyncapi/events.json`` are what the code
generates (``alexandrite contract export``); a test fails when they differ, so a changed contract is a
visible diff in review. ``contracts/released/`` holds the last released copy (``alexandrite contract
release``), the baseline of the breaking-change check (:mod:`alexandrite.devtools.contract_diff`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alexandrite.kit.settings import Settings

SERVICES = ("shop", "crm", "mes")
CONTRACT_DIR = Path("contracts")
RELEASED = "released"


def generate(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """Every document by its path under ``contracts/``, as the code describes itself now."""
    from alexandrite.crm.app import create_app as crm_app
    from alexandrite.mes.app import create_app as mes_app
    from alexandrite.shop.app import create_app as shop_app
    from alexandrite.shop.asyncapi import build_asyncapi

    settings = settings or Settings()
    factories = {"shop": shop_app, "crm": crm_app, "mes": mes_app}
    documents = {f"openapi/{name}.json": factories[name](settings).openapi() for name in SERVICES}
    documents["asyncapi/events.json"] = build_asyncapi()
    return documents


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write(root: Path, documents: dict[str, dict[str, Any]]) -> list[Path]:
    written = []
    for name, document in documents.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(document), encoding="utf-8")
        written.append(path)
    return written


def stale(root: Path, documents: dict[str, dict[str, Any]]) -> list[str]:
    """The documents whose committed file differs from (or lacks) what the code generates."""
    return [name for name, document in documents.items()
            if not (root / name).is_file() or (root / name).read_text(encoding="utf-8") != render(document)]


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded
