#!/usr/bin/env bash
# Prepare a fresh machine: local services up, virtualenv with the project and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh

# Debian packages listed in deploy/debian-packages.txt (promtool, chromium, haproxy, ...), when missing.
mapfile -t wanted < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' deploy/debian-packages.txt)
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
    echo "error: missing Debian packages (${missing[*]}); install them as root" >&2
    exit 1
  fi
  SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# RabbitMQ's Prometheus endpoint (:15692), scraped by deploy/prometheus/prometheus.yml.
if command -v rabbitmq-plugins >/dev/null && ! rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_prometheus; then
  SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $SUDO rabbitmq-plugins enable rabbitmq_prometheus >/dev/null || echo "warning: could not enable rabbitmq_prometheus" >&2
fi

# Front-end assets and Node tools at the versions pinned in package-lock.json.
if [ -f package-lock.json ]; then
  lock_stamp=node_modules/.installed-$(sha256sum package-lock.json | cut -c1-16)
  if [ ! -f "$lock_stamp" ]; then
    npm ci --no-audit --no-fund --loglevel=error
    touch "$lock_stamp"
  fi
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
