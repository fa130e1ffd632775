#!/bin/sh
# citywatch's Kafka in Docker (apache/kafka image): the server.properties `citywatch stack up`
# writes with kafka.sasl = true (tests/unit/test_compose.py keeps the two equal), a storage
# formatted with the SCRAM-SHA-512 user `citywatch`, then the broker in the foreground.
# The password comes from CITYWATCH_KAFKA_PASSWORD (URL-safe characters only: it goes into a
# JAAS string); it is written only to 0600 files, never to a command line or the log.
# The controller listener is bound to the container's loopback: only this broker talks to it.
set -eu
: "${CITYWATCH_KAFKA_PASSWORD:?set CITYWATCH_KAFKA_PASSWORD}"
case "$CITYWATCH_KAFKA_PASSWORD" in
  *[!A-Za-z0-9_.~-]*) echo "CITYWATCH_KAFKA_PASSWORD: use only A-Z a-z 0-9 _ . ~ -" >&2; exit 2;;
esac
umask 077
conf=/tmp/citywatch-kafka
mkdir -p "$conf"
cat > "$conf/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=CLIENT://0.0.0.0:9092,CONTROLLER://127.0.0.1:9093
advertised.listeners=CLIENT://127.0.0.1:9092
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="citywatch" password="$CITYWATCH_KAFKA_PASSWORD";
log.dirs=/var/lib/kafka/data
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=168
num.network.threads=2
num.io.threads=4
EOF
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  # One argument per line from an @file (argparse4j): the password stays off the command line.
  printf -- '--add-scram\nSCRAM-SHA-512=[name=citywatch,password=%s]\n' \
    "$CITYWATCH_KAFKA_PASSWORD" > "$conf/format.args"
  /opt/kafka/bin/kafka-storage.sh format -t "$CLUSTER_ID" -c "$conf/server.properties" \
    "@$conf/format.args" > /dev/null
  rm -f "$conf/format.args"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$conf/server.properties"
