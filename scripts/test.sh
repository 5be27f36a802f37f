#!/usr/bin/env bash
# Quick start, command 2: set up and run the whole test suite, on SQLite and again on PostgreSQL.
# The tests start their own real servers: redis-server, a private PostgreSQL cluster, baresip callers,
# headless Chromium. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PYTHONDONTWRITEBYTECODE=1
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
echo "=== test suite on SQLite ==="
IZS_TEST_DB=sqlite .venv/bin/python -m pytest "$@"
echo "=== test suite on PostgreSQL ==="
IZS_TEST_DB=postgres .venv/bin/python -m pytest "$@"
