#!/usr/bin/env bash
# The README's second command: install everything, then run the test suite (unit + integration).
set -uo pipefail
cd "$(dirname "$0")/.."
bash deploy/bootstrap.sh || exit 1
.venv/bin/pytest "$@"
rc=$?
# pytest exits 5 when it collected no test: that is a failure here, not a pass.
if [ "$rc" -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$rc"
