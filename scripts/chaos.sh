#!/usr/bin/env bash
# Chaos suite: faults while 500 orders flow, then 10x overload for 60 s (about 5-8 minutes on a busy
# 2-core machine). Figures land in test-artifacts/chaos-*.json and are printed (-s).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -m chaos tests/chaos -s -p no:cacheprovider "$@"
