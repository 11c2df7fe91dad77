#!/usr/bin/env bash
# Broker CPU per record, before and after a change: two builds of loadgen (each with its
# embedded broker) run the standard workload at one fixed RATE (default 3M msg/s, below the
# closed-loop maximum, so both do the same work) in alternating pairs; for WINDOW seconds in
# the middle of each run, `perf stat -e task-clock --per-thread` counts the CPU time of the
# broker's shard threads alone (not the load generator's, not the kernel's io_uring workers).
# THREADS (an awk pattern on the thread name, default ^ringlog-shard) counts other threads
# instead: THREADS=^loadgen- measures the load generator's own producers and consumers.
#
#   git worktree add /tmp/before <rev> && (cd /tmp/before && cargo build --release -p loadgen)
#   cargo build --release -p loadgen
#   benches/shard-cpu.sh /tmp/before/target/release/loadgen target/release/loadgen
#
# Prints, per run, the counted threads' CPU in ns per record acknowledged at RATE, and the
# median of each side; writes loadgen's results to OUT (default results/shard-cpu). Needs perf.
set -euo pipefail
cd "$(dirname "$0")/.."

BEFORE=${1:?usage: benches/shard-cpu.sh BEFORE_LOADGEN AFTER_LOADGEN}
AFTER=${2:?usage: benches/shard-cpu.sh BEFORE_LOADGEN AFTER_LOADGEN}
PAIRS=${PAIRS:-3}
RATE=${RATE:-3000000}
WINDOW=${WINDOW:-8}
THREADS=${THREADS:-^ringlog-shard}
OUT=${OUT:-results/shard-cpu}
command -v perf >/dev/null || { echo "shard-cpu: needs perf" >&2; exit 1; }
mkdir -p "$OUT"

# One run: prints the counted threads' ns per record over the window.
measure() {
    local loadgen=$1 name=$2
    "$loadgen" run --rate "$RATE" --duration 15s --p99-target-ms 60000 --out "$OUT" --name "$name" --quiet \
        > "$OUT/$name.txt" 2>&1 &
    local pid=$!
    sleep 9 # 5 s of warm-up, then into the measured window
    perf stat -e task-clock --per-thread -p "$pid" -x, -o "$OUT/$name.stat" -- sleep "$WINDOW" \
        2>/dev/null
    wait "$pid" || { echo "shard-cpu: $name failed, see $OUT/$name.txt" >&2; exit 1; }
    awk -F, -v rate="$RATE" -v window="$WINDOW" -v threads="$THREADS" '
        $1 ~ threads && $2 ~ /^[0-9.]+$/ { ms += $2 }
        END { printf "%.1f\n", ms * 1e6 / (rate * window) }' "$OUT/$name.stat"
}

before=() after=()
for pair in $(seq 1 "$PAIRS"); do
    b=$(measure "$BEFORE" "before-$pair")
    a=$(measure "$AFTER" "after-$pair")
    echo "pair $pair: before $b ns a record, after $a"
    before+=("$b") after+=("$a")
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
mb=$(median "${before[@]}") ma=$(median "${after[@]}")
echo "median: before $mb, after $ma ns a record of CPU in threads $THREADS at $RATE msg/s (after/before $(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.3f", a / b }'))"
