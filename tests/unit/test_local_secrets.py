"""Local runs generate their own secrets: the defaults published in the source must work nowhere."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest

from alexandrite.kit.local_secrets import METRICS_TOKEN_FILE, load_or_create, with_local_secrets
from alexandrite.kit.setting_groups import (
    DEFAULT_CARRIER_SECRET,
    DEFAULT_METRICS_TOKEN,
    DEFAULT_SECRET,
    DEFAULT_SERVICE_TOKEN,
)
from alexandrite.kit.settings import Settings

DEFAULTS = {DEFAULT_SECRET, DEFAULT_SERVICE_TOKEN, DEFAULT_CARRIER_SECRET, DEFAULT_METRICS_TOKEN}


def _local(path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, environment="local", local_secrets_file=path, **values)  # type: ignore[call-arg]


def _secrets(settings: Settings) -> list[str]:
    return [settings.auth.secret_key, settings.auth.service_token, settings.auth.carrier_webhook_secret,
            settings.obs.metrics_token]


def test_defaults_are_replaced_by_generated_secrets_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "run" / "secrets.env"
    first = with_local_secrets(_local(path))
    assert not DEFAULTS & set(_secrets(first)) and all(len(value) >= 32 for value in _secrets(first))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert (path.parent / METRICS_TOKEN_FILE).read_text() == first.obs.metrics_token
    second = with_local_secrets(_local(path))  # the next process of the run: the same secrets
    assert _secrets(second) == _secrets(first)
    other_run = with_local_secrets(_local(tmp_path / "elsewhere" / "secrets.env"))
    assert not set(_secrets(other_run)) & set(_secrets(first))


def test_explicit_secrets_are_kept(tmp_path: Path) -> None:
    given = with_local_secrets(_local(tmp_path / "s.env", secret_key="x" * 40))
    assert given.auth.secret_key == "x" * 40
    assert given.auth.service_token not in DEFAULTS


def test_production_is_never_touched_and_refuses_defaults(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="default or short secrets"):
        Settings(_env_file=None, environment="production", local_secrets_file=tmp_path / "s.env")  # type: ignore[call-arg]
    assert not (tmp_path / "s.env").exists()


def _read(path: str, queue: "multiprocessing.Queue[dict[str, str]]") -> None:
    queue.put(load_or_create(Path(path)))


def test_processes_starting_together_share_one_set(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    queue: multiprocessing.Queue[dict[str, str]] = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_read, args=(str(path), queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert all(result == results[0] for result in results)


def test_a_token_signed_with_the_published_secret_is_refused_locally(tmp_path: Path) -> None:
    """Authorization: Bearer <admin token signed with local-development-secret-change-me> → invalid."""
    from alexandrite.kit.security import Principal
    from alexandrite.kit.tokens import InvalidToken, KeyRing, issue_token, read_token

    local = with_local_secrets(_local(tmp_path / "s.env"))
    forged = issue_token(KeyRing(local.auth.secret_key_id, {local.auth.secret_key_id: DEFAULT_SECRET}),
                         Principal(role="admin", subject="x"), 600)
    with pytest.raises(InvalidToken, match="bad signature"):
        read_token(local, forged, "crm")
    assert local.auth.service_token != DEFAULT_SERVICE_TOKEN
