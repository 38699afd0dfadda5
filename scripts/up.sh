#!/usr/bin/env bash
# One command from a fresh clone to a running platform: setup, migrate, start everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/alexandrite up "$@"
