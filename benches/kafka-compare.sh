#!/usr/bin/env bash
# The comparison harness: the same loadgen workload against ringlog and Apache Kafka (3.7+)
# on this machine, with matched durability, written as one comparison result
# (results/compare/<name>.{json,md,svg}).
#
#   benches/kafka-compare.sh                 # durable: ringlog fdatasyncs before acks=all
#                                            # answers; Kafka runs with flush.messages=1
#   DURABLE=0 benches/kafka-compare.sh       # neither syncs (acks=1; ringlog flush on demand)
#   RATE=0 DURATION=30s benches/kafka-compare.sh   # any loadgen run flag via the environment
#
# Kafka comes from $KAFKA_HOME (bin/kafka-server-start.sh, KRaft mode) or, where Docker can
# run it, the apache/kafka image ($KAFKA_IMAGE). Without either the harness says so in one
# line and measures ringlog alone: it never invents a number.
set -euo pipefail
cd "$(dirname "$0")/.."

DURABLE=${DURABLE:-1}
RATE=${RATE:-1000000}
DURATION=${DURATION:-60s}
WARMUP=${WARMUP:-5s}
PARTITIONS=${PARTITIONS:-8}
BATCH=${BATCH:-64k}
COMPRESSION=${COMPRESSION:-none}
NAME=${NAME:-$([ "$DURABLE" = 1 ] && echo durable || echo no-fsync)}
KAFKA_IMAGE=${KAFKA_IMAGE:-apache/kafka:3.7.0}
RINGLOG_PORT=19192
KAFKA_PORT=19092

cargo build --release -p ringlog-engine -p loadgen
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    docker rm -f ringlog-compare-kafka >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

acks=all
if [ "$DURABLE" = 1 ]; then
    printf '[log]\nflush = "every-write"\n' > "$work/ringlog.toml"
else
    acks=1
    printf '[log]\nflush = "on-demand"\n' > "$work/ringlog.toml"
fi

target/release/ringlog serve --config "$work/ringlog.toml" --data-dir "$work/ringlog" \
    --listen 127.0.0.1:$RINGLOG_PORT > "$work/ringlog.log" 2>&1 &
pids+=($!)
targets=(--target "ringlog=127.0.0.1:$RINGLOG_PORT@$!")

wait_port() {
    for _ in $(seq 1 120); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.5
    done
    return 1
}
wait_port $RINGLOG_PORT

kafka_props() {
    cat <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$((KAFKA_PORT + 1))
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$((KAFKA_PORT + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$1
num.partitions=$PARTITIONS
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
    if [ "$DURABLE" = 1 ]; then echo "log.flush.interval.messages=1"; fi
}

kafka=""
if [ -n "${KAFKA_HOME:-}" ] && [ -x "$KAFKA_HOME/bin/kafka-server-start.sh" ]; then
    kafka_props "$work/kafka-logs" > "$work/kafka.properties"
    "$KAFKA_HOME/bin/kafka-storage.sh" format -t "$("$KAFKA_HOME/bin/kafka-storage.sh" random-uuid)" \
        -c "$work/kafka.properties" > /dev/null
    "$KAFKA_HOME/bin/kafka-server-start.sh" "$work/kafka.properties" > "$work/kafka.log" 2>&1 &
    pids+=($!)
    kafka="KAFKA_HOME ($KAFKA_HOME)"
elif command -v docker > /dev/null && docker info > /dev/null 2>&1 \
    && { docker image inspect "$KAFKA_IMAGE" > /dev/null 2>&1 || docker pull -q "$KAFKA_IMAGE" > /dev/null 2>&1; }; then
    env_args=()
    while IFS='=' read -r key value; do
        [ -z "$key" ] && continue
        env_args+=(-e "KAFKA_$(echo "$key" | tr 'a-z.' 'A-Z_')=$value")
    done < <(kafka_props /tmp/kafka-logs)
    docker run -d --name ringlog-compare-kafka --network host "${env_args[@]}" \
        -e CLUSTER_ID=ringlog-compare-000000 "$KAFKA_IMAGE" > /dev/null
    kafka="docker ($KAFKA_IMAGE)"
else
    echo "no Apache Kafka here (set KAFKA_HOME, or run where Docker can pull $KAFKA_IMAGE): measuring ringlog alone"
fi
if [ -n "$kafka" ]; then
    if wait_port $KAFKA_PORT; then
        echo "Apache Kafka from $kafka on 127.0.0.1:$KAFKA_PORT"
        kafka_target="kafka=127.0.0.1:$KAFKA_PORT"
        # A local Kafka process: its CPU time too.
        if [ -n "${KAFKA_HOME:-}" ]; then
            kafka_pid=$(pgrep -f "kafka.Kafka $work/kafka.properties" | head -1 || true)
            [ -n "$kafka_pid" ] && kafka_target="$kafka_target@$kafka_pid"
        fi
        targets+=(--target "$kafka_target")
    else
        echo "Apache Kafka from $kafka did not start listening: measuring ringlog alone"
    fi
fi

target/release/loadgen compare "${targets[@]}" --rate "$RATE" --duration "$DURATION" \
    --warmup "$WARMUP" --partitions "$PARTITIONS" --batch-bytes "$BATCH" \
    --compression "$COMPRESSION" --acks "$acks" --out results/compare --name "$NAME" \
    ${LOADGEN_FLAGS:-}
