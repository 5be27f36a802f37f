#!/usr/bin/env bash
# Quick start, command 1: set up and run the demo on embedded defaults (SQLite file, own Redis, SIP on
# 127.0.0.1). Opens the consoles' URLs in the output; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export IZS_VAR_DIR=${IZS_VAR_DIR:-var}
exec .venv/bin/izs demo "$@"
