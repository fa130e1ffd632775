#!/usr/bin/env bash
# Install everything citywatch needs and start the local stack. Idempotent: a second run only
# checks. Downloads and builds are cached under ~/.cache/citywatch (CITYWATCH_CACHE_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m[citywatch]\033[0m %s\n' "$*"; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

# 1. System packages from Debian (Mosquitto; JDK and Maven for Kafka if absent).
need=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto mosquitto-clients)
command -v java >/dev/null || need+=(default-jdk-headless)
command -v mvn >/dev/null || need+=(maven)
# Headless browser for the live operations page tests (driven by Playwright, system browser).
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
# C compiler and Python headers for the processor's compiled modules (step 2b).
command -v gcc >/dev/null || need+=(gcc)
"${PYTHON:-python3}" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need+=(python3-dev)
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The system service would hold port 1883; citywatch runs its own broker with its own config.
if command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
  $SUDO systemctl stop mosquitto || true
fi
for tool in go cargo; do
  command -v "$tool" >/dev/null || { echo "ERROR: $tool is required to build InfluxDB 1.12 from its Go module" >&2; exit 1; }
done

# 2. Python environment (Python >= 3.11).
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "ERROR: Python >= 3.11 required" >&2; exit 1; }
[ -x .venv/bin/python ] || { say "creating .venv"; "$PY" -m venv .venv; }
stamp=".venv/.citywatch-installed"
want="$(sha256sum pyproject.toml | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Python packages"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi

# 2b. Compiled copies of the processor's hot modules (mypyc, ~1 min; cached per source digest
# under the cache dir). Optional: if the build fails the same modules run as plain Python.
if [ "${CITYWATCH_NATIVE:-1}" != "0" ]; then
  .venv/bin/citywatch native build 2>/tmp/citywatch-native-build.log \
    || say "WARNING: compiled modules not built (see /tmp/citywatch-native-build.log); pure Python it is"
fi

# 3. Servers: Mosquitto, Kafka (KRaft) and InfluxDB 1.12 on 127.0.0.1 (builds InfluxDB on first run).
say "starting the local stack (first run builds InfluxDB from source: expect ~15 min on 2 cores)"
.venv/bin/citywatch stack up
