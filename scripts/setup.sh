#!/usr/bin/env bash
# Set up izs-intake on a fresh Debian 12 machine: system packages, a virtualenv in .venv, the project.
# Idempotent: re-running only installs what is missing. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3 python3-venv python3-dev build-essential
  redis-server                      # embedded live state (the app starts its own when IZS_REDIS_URL is unset)
  postgresql                        # production database; the tests start a private cluster
  espeak-ng sox                     # the waiting prompt, synthesized speech for demo calls and tests
  festival festival-czech festvox-czech-machac festvox-czech-dita festvox-kallpc16k  # natural speech for ASR tests
  baresip                           # a real SIP user agent: demo callers and telephony tests
  kamailio                          # SIP front for several intake nodes (deploy/kamailio)
  chromium chromium-driver          # console tests in a real browser
  iproute2 procps
  # Headers to build Asterisk 20 + bundled pjproject for tests/pbx (the build itself is described in
  # docs/telephony-ami.md; nothing of Asterisk is downloaded or built here).
  libjansson-dev libxml2-dev libsqlite3-dev uuid-dev libedit-dev libssl-dev libsrtp2-dev libncurses-dev
  bzip2 patch
)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
# Debian starts these services on install; izs starts its own instances, so keep the ports free.
$SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "setup: installing izs-intake and its dependencies into .venv"
.venv/bin/python -m pip install -q -e '.[dev,models]'
echo "setup: done"
