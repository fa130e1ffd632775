#!/usr/bin/env bash
# The README's second command: install everything, then run the test suite (unit + integration).
set -uo pipefail
cd "$(dirname "$0")/.."
bash deploy/bootstrap.sh || exit 1
.venv/bin/pytest "$@"
rc=$?
# The unit tests once more on the pure-Python modules: the compiled copies
# (citywatch.native) must behave exactly like their source.
if [ "$#" -eq 0 ] && [ "$rc" -eq 0 ]; then
  echo "== unit tests, pure Python (CITYWATCH_NATIVE=0)"
  CITYWATCH_NATIVE=0 .venv/bin/pytest -q tests/unit
  rc=$?
fi
# pytest exits 5 when it collected no test: that is a failure here, not a pass.
if [ "$rc" -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$rc"
