#!/usr/bin/env bash
# loadgen against one ringlog broker and against a three-broker ringlog cluster (replication
# factor 3, min.insync.replicas 2), on this machine, in one session: producers only
# (loadgen's consumers read through one broker), acks=all. For each setup, RUNS runs at the
# maximum rate (closed loop: msg/s is what was acknowledged per second) and RUNS runs at a
# fixed RATE (its produce p99). Every broker runs with --cores 1, so the two setups differ
# only in replication: three brokers, each write stored (and fdatasync'ed) three times on
# the same disk, on the same two cores as loadgen.
#
#   benches/cluster-compare.sh            # results/cluster/{single,cluster}-{max,rate}-N.json
#   RUNS=1 DURATION=10s benches/cluster-compare.sh
#
# It ends by printing the medians (also written to results/cluster/compare.md). The disk's
# own figures come from the embedded run with --disk-probe that opens the session
# (results/cluster/disk-probe.json).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
RATE=${RATE:-100000}
PARTITIONS=${PARTITIONS:-6}
OUT=${OUT:-results/cluster}
RINGLOG=target/release/ringlog
LOADGEN=target/release/loadgen
mkdir -p "$OUT"
[ -x "$RINGLOG" ] && [ -x "$LOADGEN" ] || {
    echo "cluster-compare: build first: cargo build --release -p ringlog-engine -p loadgen" >&2
    exit 1
}

. benches/processes.sh

wait_for() {
    for _ in $(seq 1 100); do
        if "$RINGLOG" -b "$1" cluster describe >/dev/null 2>&1 || "$RINGLOG" -b "$1" topic list >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    echo "cluster-compare: broker at $1 did not start" >&2
    exit 1
}

run_loadgen() { # name bootstrap replication rate
    "$LOADGEN" run --bootstrap "$2" --consumers 0 --replication-factor "$3" --partitions "$PARTITIONS" \
        --rate "$4" --duration "$DURATION" --warmup "$WARMUP" --topic "bench-$1" \
        --out "$OUT" --name "$1" --quiet || true
}

"$LOADGEN" run --disk-probe --consumers 0 --rate 0 --duration "$DURATION" --warmup "$WARMUP" \
    --partitions "$PARTITIONS" --out "$OUT" --name disk-probe --quiet || true

# One broker.
port=$(free_port)
RINGLOG_LOG=warn "$RINGLOG" serve --data-dir "$work/single" --listen "127.0.0.1:$port" --cores 1 >"$work/single.log" 2>&1 &
pids+=($!)
wait_for "127.0.0.1:$port"
for run in $(seq 1 "$RUNS"); do
    run_loadgen "single-max-$run" "127.0.0.1:$port" 1 0
    run_loadgen "single-rate-$run" "127.0.0.1:$port" 1 "$RATE"
    # Each run's topic is deleted after it: runs at the maximum rate write tens of GB.
    for kind in max rate; do
        "$RINGLOG" -b "127.0.0.1:$port" topic delete "bench-single-$kind-$run" >/dev/null 2>&1 || true
    done
done
stop_all
rm -rf "$work/single"

# Three brokers, each a controller voter.
ports=($(free_port) $(free_port) $(free_port))
cports=($(free_port) $(free_port) $(free_port))
voters="1@127.0.0.1:${cports[0]},2@127.0.0.1:${cports[1]},3@127.0.0.1:${cports[2]}"
for i in 0 1 2; do
    RINGLOG_LOG=warn,openraft=error "$RINGLOG" serve --data-dir "$work/node-$((i + 1))" \
        --listen "127.0.0.1:${ports[$i]}" --cores 1 --node-id $((i + 1)) --voters "$voters" \
        --cluster-listen "127.0.0.1:${cports[$i]}" >"$work/node-$((i + 1)).log" 2>&1 &
    pids+=($!)
done
bootstrap="127.0.0.1:${ports[0]}"
wait_for "127.0.0.1:${ports[0]}"
for _ in $(seq 1 100); do
    [ "$("$RINGLOG" -b "127.0.0.1:${ports[0]}" cluster describe 2>/dev/null | grep -c '^[123]	')" = 3 ] && break
    sleep 0.2
done
for run in $(seq 1 "$RUNS"); do
    # A topic per run, created with min.insync.replicas 2 before loadgen finds it.
    for kind in max rate; do
        "$RINGLOG" -b "127.0.0.1:${ports[0]}" topic create "bench-cluster-$kind-$run" \
            --partitions "$PARTITIONS" --replicas 3 --config min.insync.replicas=2 >/dev/null
    done
    run_loadgen "cluster-max-$run" "$bootstrap" 3 0
    run_loadgen "cluster-rate-$run" "$bootstrap" 3 "$RATE"
    for kind in max rate; do
        "$RINGLOG" -b "127.0.0.1:${ports[0]}" topic delete "bench-cluster-$kind-$run" >/dev/null 2>&1 || true
    done
done
stop_all

python3 - "$OUT" "$RUNS" "$RATE" <<'EOF'
import json, statistics, sys
out, runs, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(name):
    try:
        with open(f"{out}/{name}.json") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
rows = []
for setup in ("single", "cluster"):
    maxes, p99s, achieved = [], [], []
    for run in range(1, runs + 1):
        m, r = load(f"{setup}-max-{run}"), load(f"{setup}-rate-{run}")
        if m:
            maxes.append(m["produced"]["records_per_s"])
        if r:
            achieved.append(r["produced"]["records_per_s"])
            p99s.append(r["produce_latency"]["p99_ms"])
    rows.append((setup, maxes, achieved, p99s))
probe = load("disk-probe")
lines = ["# One broker vs three (replication factor 3, min.insync.replicas 2)", ""]
ceiling = ((probe or {}).get("storage") or {}).get("disk_ceiling")
if ceiling:
    lines.append(
        f"Disk (same session, sequential O_DIRECT writes of {ceiling['write_bytes']} bytes, "
        f"each followed by fdatasync): {ceiling['mb_per_s']:.0f} MB/s, fdatasync p50 "
        f"{ceiling['fdatasync_p50_us']} us, p99 {ceiling['fdatasync_p99_us']} us"
    )
    lines.append("")
lines.append(f"Producers only, acks=all, 100-byte records, {runs} runs each; median (all runs).")
lines.append("")
lines.append(f"| setup | max rate msg/s | at {rate} msg/s: achieved | produce p99 ms |")
lines.append("|---|---|---|---|")
for setup, maxes, achieved, p99s in rows:
    med = lambda xs, f: (f.format(statistics.median(xs)) + " (" + ", ".join(f.format(x) for x in xs) + ")") if xs else "-"
    lines.append(f"| {setup} | {med(maxes, '{:.0f}')} | {med(achieved, '{:.0f}')} | {med(p99s, '{:.2f}')} |")
single, cluster = rows[0][1], rows[1][1]
if single and cluster:
    lines.append("")
    lines.append(f"cluster / single max rate: {statistics.median(cluster) / statistics.median(single):.2f}")
text = "\n".join(lines) + "\n"
open(f"{out}/compare.md", "w").write(text)
print(text)
EOF
