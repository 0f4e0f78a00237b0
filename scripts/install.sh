#!/usr/bin/env bash
# Create .venv (if missing) and install RECAP Studio into it; pass "test" to add the test extra
# and Debian's Chromium for the browser tests. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "error: RECAP Studio needs Python 3.11 or newer ($python is $("$python" --version 2>&1))" >&2
    exit 2
}
[ -x .venv/bin/python ] || "$python" -m venv .venv

if [ "$extra" = "test" ]; then
    if ! command -v chromium >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
    fi
    .venv/bin/pip install -q -e '.[test]'
else
    .venv/bin/pip install -q -e .
fi
