#!/usr/bin/env bash
# The README's first command: install everything, then run the demo (stack, simulator, pipeline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/bootstrap.sh
exec .venv/bin/citywatch demo "$@"
