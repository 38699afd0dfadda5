"""Page helpers: pinned vendored assets, CSRF tokens, redirects, plain-words errors, durations."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alexandrite.contracts.order_status import IllegalTransition, OrderStatus
from alexandrite.kit.errors import ApiError
from alexandrite.kit.settings import Settings
from alexandrite.kit.web import session
from alexandrite.kit.web.render import STATIC_DIR, duration, safe_next
from alexandrite.orders.words import delay_words, plain_error, timeline

ROOT = Path(__file__).resolve().parents[2]
VENDOR = STATIC_DIR / "vendor"
VENDORED = {
    "htmx/htmx.min.js": "htmx.org/dist/htmx.min.js",
    "three/three.module.js": "three/build/three.module.js",
    "three/three.core.js": "three/build/three.core.js",
    "three/addons/loaders/STLLoader.js": "three/examples/jsm/loaders/STLLoader.js",
    "three/addons/controls/OrbitControls.js": "three/examples/jsm/controls/OrbitControls.js",
}


def test_vendored_assets_are_the_locked_versions() -> None:
    lock = json.loads((ROOT / "package-lock.json").read_text())
    pinned = {name: lock["packages"][f"node_modules/{name}"]["version"] for name in ("htmx.org", "three")}
    assert json.loads((VENDOR / "versions.json").read_text()) == pinned
    package = json.loads((ROOT / "package.json").read_text())["dependencies"]
    assert all(package[name] == version for name, version in pinned.items())  # exact pins, no ranges
    for ours in VENDORED:
        assert (VENDOR / ours).stat().st_size > 1000
    modules = ROOT / "node_modules"
    if modules.is_dir():  # setup.sh runs npm ci: the copies must be byte-identical
        for ours, theirs in VENDORED.items():
            assert (VENDOR / ours).read_bytes() == (modules / theirs).read_bytes(), ours


def test_csrf_tokens_are_bound_to_the_session_and_service() -> None:
    settings = Settings()
    a = session.csrf_token(settings, "shop", "token-a")
    assert a == session.csrf_token(settings, "shop", "token-a") and len(a) == 64
    assert a != session.csrf_token(settings, "shop", "token-b")
    assert a != session.csrf_token(settings, "crm", "token-a")
    assert session.csrf_token(settings.replace(**{"secret_key": "x" * 40}), "shop", "token-a") != a
    assert session.csrf_token(settings, "shop", None) == ""


@pytest.mark.parametrize(("target", "expected"), [
    ("/orders/1", "/orders/1"), ("//evil.example/x", "/orders"), ("https://evil.example", "/orders"),
    ("/\\evil", "/orders"), (None, "/orders"), ("", "/orders"),
])
def test_only_local_paths_are_redirect_targets(target: str | None, expected: str) -> None:
    assert safe_next(target, "/orders") == expected


def test_errors_read_plainly() -> None:
    illegal = IllegalTransition(OrderStatus.SUBMITTED, OrderStatus.FILE_UPLOADED, "internal words")
    assert plain_error(illegal) == ("That is not possible any more: the order is now “Submitted”. "
                                    "Reload the page to see its latest state.")
    assert plain_error(ApiError(413, "file_too_large", "The file is larger than 100 MB.")) == \
        "The file is larger than 100 MB."
    assert "try again in a minute" in plain_error(ApiError(503, "dependency_unavailable", "mes failed"))
    assert plain_error(RuntimeError("boom")) == "Something went wrong on our side; please try again."


def test_durations_and_timeline() -> None:
    assert [duration(s) for s in (4, 75, 7300, 90000, None)] == ["4 s", "1 min 15 s", "2 h 1 min", "1 d 1 h", ""]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    entries = timeline([{"status": "INITIATED", "at": t0, "by": "x"},
                        {"status": "FILE_UPLOADED", "at": (t0 + timedelta(seconds=30)).isoformat(), "by": "x"}],
                       now=t0 + timedelta(seconds=100))
    assert [(e["stayed_seconds"], e["current"]) for e in entries] == [(30.0, False), (70.0, True)]


def test_delay_notices_read_plainly() -> None:
    since = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    delay = {"stage": "MANUFACTURING_STARTED", "since": since, "sla_seconds": 86400.0,
             "detected_at": since + timedelta(days=1), "new_eta": datetime(2026, 12, 2, tzinfo=UTC)}
    assert delay_words(delay) == ("The step “Being made” is taking longer than we promised (since 20 Nov 2026, "
                                  "09:00:00 UTC). We now expect to ship it by 02 December 2026. "
                                  "We are sorry for the wait.")
    assert delay_words({"stage": "DELIVERY", "new_eta": "2026-12-05T00:00:00+00:00"}).startswith(
        "Delivery is taking longer than we promised. We now expect to ship it by 05 December 2026.")
