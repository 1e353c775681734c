#!/usr/bin/env bash
# A throwaway single-node Apache Kafka 4.1 broker (KRaft, combined broker and controller)
# on loopback, from Maven Central's jars: the broker of Sluice's tests, benchmark and
# Kafka demo.
#
#   kafka-broker.sh fetch           jars from Maven Central (once per machine; Maven's
#                                   cache in ~/.m2 makes later fetches offline)
#   kafka-broker.sh start WORKDIR   format and start in the background; prints
#                                   BOOTSTRAP=127.0.0.1:PORT once it serves clients
#   kafka-broker.sh stop WORKDIR    SIGTERM (then SIGKILL) the broker, delete WORKDIR
#   kafka-broker.sh run WORKDIR     format if new, then become the broker in the
#                                   foreground (what the Rust tests spawn); a second run
#                                   on the same WORKDIR restarts it on its data and ports
#   kafka-broker.sh libs            prints the folder of the jars
#
# Environment: KAFKA_PORT / KAFKA_CONTROLLER_PORT (default: free ports, chosen once per
# WORKDIR), KAFKA_HEAP_OPTS, KAFKA_JVM_OPTS, SLUICE_KAFKA_LIBS (the jars' folder; default
# ${SLUICE_CACHE_DIR:-~/.cache/sluice}/kafka-4.1.1/libs), JAVA.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_VERSION=4.1.1
KAFKA_LIBS="${SLUICE_KAFKA_LIBS:-${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}/kafka-$KAFKA_VERSION/libs}"
JAVA="${JAVA:-${JAVA_HOME:+$JAVA_HOME/bin/}java}"
START_TIMEOUT_S="${KAFKA_START_TIMEOUT_S:-90}"
# A test broker: small heap, C1 only and the serial collector favour start-up time and
# memory on 2 cores over peak throughput.
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
JVM_OPTS="${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:MaxMetaspaceSize=256m -XX:+ExitOnOutOfMemoryError -XX:-UsePerfData -Djava.awt.headless=true}"
LOG4J="-Dlog4j2.configurationFile=$HERE/log4j2.properties"

have_libs() { compgen -G "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null; }

cmd_fetch() {
  have_libs && return 0
  command -v mvn >/dev/null || { echo "fetching Kafka needs Maven: apt-get install maven" >&2; exit 1; }
  mkdir -p "$KAFKA_LIBS"
  mvn -B -q -f "$HERE/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" >&2
  have_libs || { echo "no kafka_2.13-$KAFKA_VERSION.jar in $KAFKA_LIBS after mvn" >&2; exit 1; }
}

free_port() {
  python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()'
}

# 16 random bytes, URL-safe base64 without padding: the form of Kafka's `random-uuid`.
cluster_id() { head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }

# Writes WORKDIR/server.properties (once: its ports stay for restarts) and formats the
# storage (once).
prepare() {
  local work="$1"
  mkdir -p "$work/data" "$work/logs" "$work/tmp"
  if [ ! -f "$work/server.properties" ]; then
    local bport="${KAFKA_PORT:-$(free_port)}" cport="${KAFKA_CONTROLLER_PORT:-$(free_port)}"
    while [ "$cport" = "$bport" ]; do cport="$(free_port)"; done
    # Java properties files take no trailing comments: comments go on their own lines.
    cat > "$work/server.properties.new" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${cport}
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:${bport},CONTROLLER://127.0.0.1:${cport}
advertised.listeners=PLAINTEXT://127.0.0.1:${bport}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=${work}/data
# one node: every replication factor and min ISR is 1
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# fast tests: no rebalance delay; timed-out transactions aborted within a second
group.initial.rebalance.delay.ms=0
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
# keep every record: the flights are from 2001, and time-based retention (7 days by the
# records' timestamps, checked 30 s after start) would delete their closed segments
log.retention.ms=-1
# 1 MiB is the smallest segment Kafka 4 accepts
log.segment.bytes=1048576
offsets.topic.segment.bytes=1048576
transaction.state.log.segment.bytes=1048576
controlled.shutdown.enable=false
# a small footprint on 2 cores (the cleaner's dedupe buffer is on the heap)
log.cleaner.dedupe.buffer.size=2097152
num.network.threads=2
num.io.threads=2
background.threads=2
group.coordinator.threads=1
num.recovery.threads.per.data.dir=1
PROPS
    mv "$work/server.properties.new" "$work/server.properties"
    echo "127.0.0.1:${bport}" > "$work/bootstrap"
  fi
  if [ ! -f "$work/data/meta.properties" ]; then
    "$JAVA" -Xmx256m $LOG4J -Djava.io.tmpdir="$work/tmp" -cp "$KAFKA_LIBS/*" \
      kafka.tools.StorageTool format -t "$(cluster_id)" -c "$work/server.properties" \
      >"$work/logs/format.out" 2>&1 || { cat "$work/logs/format.out" >&2; exit 1; }
  fi
}

# Fetches the jars if missing and prepares WORKDIR ($1); prints its absolute path.
ready_work() {
  have_libs || cmd_fetch
  mkdir -p "$1"
  local work
  work="$(cd "$1" && pwd)"
  prepare "$work"
  echo "$work"
}

cmd_run() {
  local work
  work="$(ready_work "$1")"
  # shellcheck disable=SC2086
  exec "$JAVA" $HEAP_OPTS $JVM_OPTS $LOG4J -Djava.io.tmpdir="$work/tmp" -cp "$KAFKA_LIBS/*" \
    kafka.Kafka "$work/server.properties"
}

cmd_start() {
  local work
  work="$(ready_work "$1")"
  # shellcheck disable=SC2086
  nohup "$JAVA" $HEAP_OPTS $JVM_OPTS $LOG4J -Djava.io.tmpdir="$work/tmp" -cp "$KAFKA_LIBS/*" \
    kafka.Kafka "$work/server.properties" >"$work/logs/kafka.out" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" > "$work/kafka.pid"
  local deadline=$(( $(date +%s) + START_TIMEOUT_S ))
  until grep -q 'Kafka Server started' "$work/logs/kafka.out" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "kafka exited during start-up; its last log lines:" >&2
      tail -n 40 "$work/logs/kafka.out" >&2
      exit 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "kafka not ready after ${START_TIMEOUT_S}s; its last log lines:" >&2
      tail -n 40 "$work/logs/kafka.out" >&2
      cmd_stop "$work"
      exit 1
    fi
    sleep 0.2
  done
  echo "BOOTSTRAP=$(cat "$work/bootstrap")"
}

cmd_stop() {
  local work="$1" pid i
  if [ -f "$work/kafka.pid" ]; then
    pid="$(cat "$work/kafka.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for i in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  case "$work" in "" | /) echo "refusing to delete '$work'" >&2; exit 1 ;; esac
  rm -rf "$work"
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  libs) echo "$KAFKA_LIBS" ;;
  run) cmd_run "${2:?usage: $0 run WORKDIR}" ;;
  start) cmd_start "${2:?usage: $0 start WORKDIR}" ;;
  stop) cmd_stop "${2:?usage: $0 stop WORKDIR}" ;;
  *) echo "usage: $0 fetch | libs | run WORKDIR | start WORKDIR | stop WORKDIR" >&2; exit 2 ;;
esac
