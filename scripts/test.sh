#!/usr/bin/env bash
# One command from a fresh clone to a full test run: unit, integration and end-to-end tests with the
# high-availability drill (tests/ha: its own clusters, each one's leader killed while orders flow), then
# the chaos suite (faults while 500 orders flow, 10x overload). With arguments, only pytest with those
# arguments runs (e.g. `scripts/test.sh tests/unit -q`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pytest
exec bash scripts/chaos.sh
