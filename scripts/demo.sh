#!/usr/bin/env bash
# Install RECAP Studio and start it on the offline demo workspace (./demo-home) at
# http://127.0.0.1:7860; the demo command prints the login.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/recap-studio --home ./demo-home demo --serve --host 127.0.0.1 --port 7860
