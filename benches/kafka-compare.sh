#!/usr/bin/env bash
# The comparison harness: the same loadgen workload against ringlog and Apache Kafka on this
# machine, with matched durability, then Kafka's own load tools (kafka-producer-perf-test,
# kafka-consumer-perf-test) against both, written as one result:
# $OUT/$NAME.{json,md,svg} (default results/compare/durable.*).
#
#   benches/kafka-compare.sh                 # durable: ringlog fdatasyncs before acks=all
#                                            # answers; Kafka runs with
#                                            # log.flush.interval.messages=1 (fsync per append)
#   DURABLE=0 benches/kafka-compare.sh       # neither syncs (acks=1; ringlog flush on demand,
#                                            # Kafka's default flushing)
#   RATE=0 DURATION=30s benches/kafka-compare.sh   # loadgen's settings via the environment
#
# Kafka comes from $KAFKA_HOME (bin/kafka-server-start.sh, KRaft mode), else from Docker's
# apache/kafka image where Docker runs, else (the case on our machines) from Maven Central
# through benches/kafka/kafka: the pinned release on this JVM, with the heap and JVM
# settings of Kafka's own start script and its default threads. The result says which.
#
# Exit status: 0 when both brokers delivered every acknowledged record once and in order
# without an error, and every record Kafka's perf tools sent came back; 1 otherwise, with the
# reason. A missed throughput or latency target is a result (each run's verdict says so).
set -euo pipefail
cd "$(dirname "$0")/.."

DURABLE=${DURABLE:-1}
RATE=${RATE:-1000000}
DURATION=${DURATION:-60s}
WARMUP=${WARMUP:-5s}
PARTITIONS=${PARTITIONS:-8}
MESSAGE_BYTES=${MESSAGE_BYTES:-100}
BATCH=${BATCH:-64k}
COMPRESSION=${COMPRESSION:-none}
NAME=${NAME:-$([ "$DURABLE" = 1 ] && echo durable || echo no-fsync)}
OUT=${OUT:-results/compare}
# Kafka's perf tools: records the producer tool sends (default: the loadgen run's count).
PERF_TOOLS=${PERF_TOOLS:-1}
PERF_RECORDS=${PERF_RECORDS:-}
DISK_PROBE=${DISK_PROBE:-1}
# release (default) or debug binaries of ringlog and loadgen.
PROFILE=${PROFILE:-release}
KAFKA_IMAGE=${KAFKA_IMAGE:-apache/kafka:4.1.1}
tools=benches/kafka/kafka

seconds() { # "60s", "500ms", "2m" -> whole seconds (at least 1)
    case "$1" in
        *ms) echo $(( (${1%ms} + 999) / 1000 )) ;;
        *s) echo "${1%s}" ;;
        *m) echo $(( ${1%m} * 60 )) ;;
        *) echo "$1" ;;
    esac
}
bytes() { # "64k", "1m", "65536" -> bytes
    case "$1" in
        *k | *K) echo $(( ${1%[kK]} * 1024 )) ;;
        *m | *M) echo $(( ${1%[mM]} * 1024 * 1024 )) ;;
        *) echo "$1" ;;
    esac
}
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# A free port whose successor is free too: Kafka's controller listens on PORT+1 (once it was
# taken, by another socket's ephemeral port, and Kafka did not start).
free_port_pair() {
    python3 -c '
import socket
for _ in range(100):
    first, second = socket.socket(), socket.socket()
    try:
        first.bind(("127.0.0.1", 0))
        port = first.getsockname()[1]
        second.bind(("127.0.0.1", port + 1))
        print(port)
        break
    except OSError:
        pass
    finally:
        first.close()
        second.close()
else:
    raise SystemExit("no two adjacent free ports on 127.0.0.1")
'
}

# Seconds of quiet before the first broker starts, after a sync: ext4 keeps freeing the
# blocks of a previous run's deleted files (gigabytes) for a while, and fsyncs meanwhile
# are slow (measured: produce p99 7-8 ms right after deleting 12 GB, 5 ms without).
SETTLE=${SETTLE:-20}

if [ "$PROFILE" = release ]; then
    cargo build --release -p ringlog-engine -p loadgen
else
    cargo build -p ringlog-engine -p loadgen
fi
bin="target/$PROFILE"
work=$(mktemp -d)
pids=()
kafka_dir=""
kafka_pid=""
cleanup() {
    for pid in "${pids[@]}" $kafka_pid; do kill -CONT "$pid" 2> /dev/null || true; done
    for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
    [ -n "$kafka_dir" ] && "$tools" stop "$kafka_dir" 2> /dev/null || true
    docker rm -f ringlog-compare-kafka > /dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "kafka-compare: $*" >&2
    exit 1
}

wait_port() {
    for _ in $(seq 1 120); do
        if (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; then return 0; fi
        sleep 0.5
    done
    return 1
}

sync
sleep "$SETTLE"

acks=all
kafka_mode=durable
if [ "$DURABLE" = 1 ]; then
    printf '[log]\nflush = "every-write"\n' > "$work/ringlog.toml"
    durability="durable: ringlog answers acks=all after fdatasync of the data; Kafka with log.flush.interval.messages=1 fsyncs each append before answering; producers acks=all"
else
    acks=1
    kafka_mode=no-fsync
    printf '[log]\nflush = "on-demand"\n' > "$work/ringlog.toml"
    durability="not durable: neither broker syncs before answering (ringlog flush on demand, Kafka's default flushing); producers acks=1"
fi

ringlog_port=$(free_port)
# As the Kafka below (and Kafka's single-node config/server.properties): no wait for more
# members before a group's first rebalance.
"$bin/ringlog" serve --config "$work/ringlog.toml" --data-dir "$work/ringlog" \
    --listen "127.0.0.1:$ringlog_port" --group-initial-rebalance-delay-ms 0 > "$work/ringlog.log" 2>&1 &
ringlog_pid=$!
pids+=("$ringlog_pid")
wait_port "$ringlog_port" || fail "ringlog did not listen on $ringlog_port: $(tail -5 "$work/ringlog.log")"
echo "ringlog on 127.0.0.1:$ringlog_port (pid $ringlog_pid)"

kafka_port=$(free_port_pair)
kafka_props() { "$tools" properties "$kafka_port" "$1" "$kafka_mode"; }
if [ -n "${KAFKA_HOME:-}" ] && [ -x "$KAFKA_HOME/bin/kafka-server-start.sh" ]; then
    kafka_props "$work/kafka-logs" > "$work/kafka.properties"
    "$KAFKA_HOME/bin/kafka-storage.sh" format -t "$("$KAFKA_HOME/bin/kafka-storage.sh" random-uuid)" \
        -c "$work/kafka.properties" > /dev/null
    "$KAFKA_HOME/bin/kafka-server-start.sh" "$work/kafka.properties" > "$work/kafka.log" 2>&1 &
    pids+=($!)
    wait_port "$kafka_port" || fail "Kafka from $KAFKA_HOME did not listen on $kafka_port"
    kafka_pid=$(pgrep -f "kafka.Kafka $work/kafka.properties" | head -1 || true)
    kafka_from="KAFKA_HOME ($KAFKA_HOME), its bin/kafka-server-start.sh"
elif command -v docker > /dev/null && docker info > /dev/null 2>&1 \
    && { docker image inspect "$KAFKA_IMAGE" > /dev/null 2>&1 || docker pull -q "$KAFKA_IMAGE" > /dev/null 2>&1; }; then
    env_args=()
    while IFS='=' read -r key value; do
        case "$key" in "" | \#*) continue ;; esac
        env_args+=(-e "KAFKA_$(echo "$key" | tr 'a-z.' 'A-Z_')=$value")
    done < <(kafka_props /tmp/kafka-logs)
    docker run -d --name ringlog-compare-kafka --network host "${env_args[@]}" \
        -e CLUSTER_ID=ringlog-compare-000000 "$KAFKA_IMAGE" > /dev/null
    wait_port "$kafka_port" || fail "Kafka in Docker ($KAFKA_IMAGE) did not listen on $kafka_port"
    kafka_from="Docker ($KAFKA_IMAGE); its CPU and memory are not measured"
else
    kafka_dir="$work/kafka"
    kafka_pid=$("$tools" start "$kafka_dir" "$kafka_port" "$kafka_mode") \
        || fail "Apache Kafka from Maven Central did not start (see above)"
    kafka_from="Maven Central (org.apache.kafka:kafka_2.13:$("$tools" version)) on $(java -version 2>&1 | head -1), started by benches/kafka/kafka: heap -Xmx1G -Xms1G and G1 as kafka-server-start.sh, num.io.threads and num.network.threads at their defaults (8, 3), KRaft broker+controller in one process"
fi
echo "Apache Kafka on 127.0.0.1:$kafka_port from $kafka_from"
kafka_target="kafka=127.0.0.1:$kafka_port"
[ -n "$kafka_pid" ] && kafka_target="$kafka_target@$kafka_pid"

disk_args=()
[ "$DISK_PROBE" = 1 ] && disk_args=(--disk-probe-dir "$work")
mkdir -p "$OUT"
rm -f "$OUT/$NAME.json" "$OUT/$NAME.md" "$OUT/$NAME.svg"
"$bin/loadgen" compare --target "ringlog=127.0.0.1:$ringlog_port@$ringlog_pid" \
    --target "$kafka_target" \
    --note "$durability" \
    --note "ringlog $(git rev-parse --short HEAD) ($PROFILE build): ringlog serve, one shard per core, group.initial.rebalance.delay.ms 0 as Kafka's, every other setting at its default" \
    --note "Apache Kafka from $kafka_from" \
    --note "both brokers ran on this machine, sharing its $(nproc) cores with the load generator; each was driven in turn while the other was stopped (SIGSTOP), so an idle broker took no CPU from the measured one" \
    --freeze-others \
    --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" --partitions "$PARTITIONS" \
    --message-bytes "$MESSAGE_BYTES" --batch-bytes "$BATCH" --compression "$COMPRESSION" \
    --acks "$acks" --out "$OUT" --name "$NAME" "${disk_args[@]}" ${LOADGEN_FLAGS:-} \
    || [ -f "$OUT/$NAME.json" ] || fail "loadgen compare wrote no result"
status=0

if [ "$PERF_TOOLS" = 1 ]; then
    if [ -z "$PERF_RECORDS" ]; then
        if [ "$RATE" = 0 ]; then
            PERF_RECORDS=$((2000000 * $(seconds "$DURATION")))
        else
            PERF_RECORDS=$((RATE * $(seconds "$DURATION")))
        fi
    fi
    throughput=$([ "$RATE" = 0 ] && echo -1 || echo "$RATE")
    compression_type=$COMPRESSION
    for broker in ringlog kafka; do
        port=$([ "$broker" = ringlog ] && echo "$ringlog_port" || echo "$kafka_port")
        address="127.0.0.1:$port"
        # As for loadgen's runs: the other broker stopped while one is measured.
        other_pid=$([ "$broker" = ringlog ] && echo "$kafka_pid" || echo "$ringlog_pid")
        [ -n "$other_pid" ] && kill -STOP "$other_pid"
        "$tools" kafka-topics --bootstrap-server "$address" --create --topic perf-test \
            --partitions "$PARTITIONS" > /dev/null \
            || fail "kafka-topics could not create perf-test on $broker"
        producer_command=(kafka-producer-perf-test --topic perf-test --num-records "$PERF_RECORDS"
            --record-size "$MESSAGE_BYTES" --throughput "$throughput"
            --producer-props "bootstrap.servers=$address" "acks=$acks" "batch.size=$(bytes "$BATCH")"
            linger.ms=1 "compression.type=$compression_type")
        echo "$broker: ${producer_command[*]}"
        "$tools" "${producer_command[@]}" > "$work/$broker-producer-perf.txt" 2> "$work/$broker-producer-perf.err" \
            || { status=1; echo "kafka-compare: kafka-producer-perf-test failed against $broker" >&2; }
        consumer_command=(kafka-consumer-perf-test --bootstrap-server "$address" --topic perf-test
            --messages "$PERF_RECORDS" --timeout 30000)
        echo "$broker: ${consumer_command[*]}"
        "$tools" "${consumer_command[@]}" > "$work/$broker-consumer-perf.txt" 2> "$work/$broker-consumer-perf.err" \
            || { status=1; echo "kafka-compare: kafka-consumer-perf-test failed against $broker" >&2; }
        [ -n "$other_pid" ] && kill -CONT "$other_pid"
        printf '%s\n' "${producer_command[*]}" > "$work/$broker-producer-perf.cmd"
        printf '%s\n' "${consumer_command[*]}" > "$work/$broker-consumer-perf.cmd"
    done
    python3 benches/kafka/compare_result.py "$OUT/$NAME" "$work" "$PERF_RECORDS" || status=1
else
    python3 benches/kafka/compare_result.py "$OUT/$NAME" || status=1
fi
cat "$OUT/$NAME.md"
[ "$status" = 0 ] || fail "a broker failed a check; see $OUT/$NAME.md"
