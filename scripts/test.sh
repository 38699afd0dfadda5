#!/usr/bin/env bash
# One command from a fresh clone to a full test run (unit, integration, end to end).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
