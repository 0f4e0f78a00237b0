#!/usr/bin/env bash
# Refresh requirements.lock: resolve pyproject.toml's ranges in a throw-away venv and record the
# exact version of every package that got installed. scripts/install.sh installs from the lock
# (pip constraints), so every machine and CI get the set that passed the tests.
#
# When to run it: after changing a dependency in pyproject.toml (commit the lock with that change,
# then check a fresh install still passes: bash scripts/test.sh in a fresh clone).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q -e '.[test]'
{
    echo "# Exact versions for scripts/install.sh (pip constraints). Written by scripts/lock.sh on $(date -u +%Y-%m-%d)"
    echo "# from pyproject.toml's ranges with $("$tmp/venv/bin/python" --version) on $(uname -m); do not edit by hand."
    "$tmp/venv/bin/pip" freeze --exclude-editable | LC_ALL=C sort -f
} > requirements.lock.new
mv requirements.lock.new requirements.lock
"$tmp/venv/bin/pip" check
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
