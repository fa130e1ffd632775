#!/usr/bin/env bash
# Fetch Apache Kafka's jars from Maven Central into the citywatch cache (idempotent).
set -euo pipefail
KAFKA_VERSION="${1:-${CITYWATCH_KAFKA__VERSION:-4.3.1}}"
CACHE="${CITYWATCH_CACHE_DIR:-$HOME/.cache/citywatch}"
LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
if [ -f "$LIBS/.complete" ]; then echo "kafka $KAFKA_VERSION already in $LIBS"; exit 0; fi
command -v java >/dev/null || { echo "ERROR: java not found; install a JDK >= 17" >&2; exit 1; }
command -v mvn >/dev/null || { echo "ERROR: mvn not found; install Maven (apt-get install maven)" >&2; exit 1; }
rm -rf "$LIBS"; mkdir -p "$LIBS"
here="$(cd "$(dirname "$0")" && pwd)"
mvn -q -B -f "$here/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    -Dmaven.repo.local="$CACHE/m2" dependency:copy-dependencies -DoutputDirectory="$LIBS"
touch "$LIBS/.complete"
echo "kafka $KAFKA_VERSION jars in $LIBS"
