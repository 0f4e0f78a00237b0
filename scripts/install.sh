#!/usr/bin/env bash
# Create .venv (if missing) and install RECAP Studio into it; pass "test" to add the test extra
# and Debian's Chromium for the browser tests. Safe to run again: it only adds what is missing.
#
# Versions come from requirements.lock (exact pins written by scripts/lock.sh), so a fresh
# machine gets the set the tests passed with. RECAP_STUDIO_UNLOCKED=1 resolves pyproject.toml's
# ranges instead (newest compatible releases; untested combinations may break).
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "error: RECAP Studio needs Python 3.11 or newer ($python is $("$python" --version 2>&1))" >&2
    exit 2
}
[ -x .venv/bin/python ] || "$python" -m venv .venv

lock=(-c requirements.lock)
if [ "${RECAP_STUDIO_UNLOCKED:-}" = "1" ]; then
    lock=()
    echo "installing without requirements.lock (RECAP_STUDIO_UNLOCKED=1)" >&2
fi

if [ "$extra" = "test" ]; then
    if ! command -v chromium >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
    fi
    .venv/bin/pip install -q "${lock[@]}" -e '.[test]'
else
    .venv/bin/pip install -q "${lock[@]}" -e .
fi

# An editable install leaves our own modules uncompiled (pip compiles only what it copies), and
# where PYTHONDONTWRITEBYTECODE is set (containers, CI images) Python then compiles all of them
# again on every start: about 0.2 s of each `recap-studio serve` on a 2-core machine.
.venv/bin/python -m compileall -q backend studio training >/dev/null
