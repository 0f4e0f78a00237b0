#!/usr/bin/env bash
# Install everything the tests need (Python packages, Debian's Chromium) and run the whole
# suite: lint, then pytest (real SQLite files, real studio server, real headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
