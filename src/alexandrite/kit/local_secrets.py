"""Secrets generated on first start for local and compose runs, so the development defaults published in the
source work nowhere.

When the environment is not production and a secret setting still holds its published default, the value
comes from ``ALEX_LOCAL_SECRETS_FILE`` (``.alexandrite/secrets.env`` under the working directory by
default): created on first use with random values, mode 0600 in a 0700 directory, outside git. Every
process of one run reads the same file (creation is serialised by a file lock), so the shop, crm, mes and
workers share their secrets. A secret given explicitly (environment or ``.env``) is used as given.
Production never gets here: it refuses default secrets (kit/settings.py).

The metrics token is also written alone to ``alexandrite-metrics-token`` next to the file (mode 0644, for a
Prometheus running as another user: compose's image makes the directory 0711, so it can be read by name but
not listed; a directory this module creates is 0700).
"""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from alexandrite.kit.setting_groups import (
    DEFAULT_CARRIER_SECRET,
    DEFAULT_METRICS_TOKEN,
    DEFAULT_SECRET,
    DEFAULT_SERVICE_TOKEN,
)

if TYPE_CHECKING:
    from alexandrite.kit.settings import Settings

# flat setting name -> (group, field, published default)
SECRETS = {
    "secret_key": ("auth", "secret_key", DEFAULT_SECRET),
    "service_token": ("auth", "service_token", DEFAULT_SERVICE_TOKEN),
    "carrier_webhook_secret": ("auth", "carrier_webhook_secret", DEFAULT_CARRIER_SECRET),
    "metrics_token": ("obs", "metrics_token", DEFAULT_METRICS_TOKEN),
}
METRICS_TOKEN_FILE = "alexandrite-metrics-token"


def _parse(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.startswith("ALEX_"):
            values[name[len("ALEX_"):].lower()] = value
    return values


def load_or_create(path: Path) -> dict[str, str]:
    """The secrets kept in ``path`` (flat names), creating or completing the file under an exclusive lock."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            values = _parse(handle.read())
            missing = [name for name in SECRETS if len(values.get(name, "")) < 32]
            if missing:
                for name in missing:
                    values[name] = secrets.token_urlsafe(48)
                handle.seek(0)
                handle.truncate()
                handle.write("# Generated on first start for local runs; never commit, never use in production.\n")
                handle.writelines(f"ALEX_{name.upper()}={values[name]}\n" for name in SECRETS)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(path, 0o600)
            token_file = path.parent / METRICS_TOKEN_FILE
            if missing or not token_file.exists():
                token_descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                with os.fdopen(token_descriptor, "w", encoding="utf-8") as out:
                    out.write(values["metrics_token"])
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    return {name: values[name] for name in SECRETS}


def with_local_secrets(settings: "Settings") -> "Settings":
    """``settings`` with every secret still at its published default replaced from the local secrets file."""
    if settings.environment == "production":
        return settings
    defaults = [name for name, (group, field, default) in SECRETS.items()
                if getattr(getattr(settings, group), field) == default]
    if not defaults:
        return settings
    kept = load_or_create(Path(settings.auth.local_secrets_file))
    return settings.replace(**{name: kept[name] for name in defaults})


def secret_environment(settings: "Settings") -> dict[str, str]:
    """The secrets as ``ALEX_*`` variables, for child processes of one run."""
    return {f"ALEX_{name.upper()}": str(getattr(getattr(settings, group), field))
            for name, (group, field, _) in SECRETS.items()}
