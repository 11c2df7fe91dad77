#!/usr/bin/env bash
# Two builds of ringlog, each as a three-broker cluster (replication factor 3,
# min.insync.replicas 2, every broker --cores 1), loaded in alternation at one fixed RATE by
# loadgen (producers only, acks=all, 100-byte records): the before/after of a change to the
# replicated produce path, measured in one session on one disk.
#
#   git worktree add /tmp/before <rev> && (cd /tmp/before && cargo build --release -p ringlog-engine)
#   cargo build --release -p ringlog-engine -p loadgen
#   benches/cluster-ab.sh /tmp/before/target/release/ringlog target/release/ringlog
#
# Writes results/cluster/ab/{before,after}-N.json (loadgen's results) and summary.md (the
# medians and each run, with the disk's own figures measured before and after the runs);
# BEFORE_LABEL and AFTER_LABEL name the builds there (default: their paths).
set -euo pipefail
cd "$(dirname "$0")/.."

BEFORE=${1:?usage: benches/cluster-ab.sh BEFORE_RINGLOG AFTER_RINGLOG}
AFTER=${2:?usage: benches/cluster-ab.sh BEFORE_RINGLOG AFTER_RINGLOG}
PAIRS=${PAIRS:-3}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
RATE=${RATE:-100000}
PARTITIONS=${PARTITIONS:-6}
OUT=${OUT:-results/cluster/ab}
LOADGEN=target/release/loadgen
[ -x "$LOADGEN" ] || { echo "cluster-ab: build loadgen first: cargo build --release -p loadgen" >&2; exit 1; }
mkdir -p "$OUT"

. benches/processes.sh

probe() { # name
    "$LOADGEN" disk-probe --dir "$work" --duration 4s >"$OUT/$1.txt" 2>&1 || true
}

run_cluster() { # ringlog name
    local ringlog=$1 name=$2
    local ports=($(free_port) $(free_port) $(free_port)) cports=($(free_port) $(free_port) $(free_port))
    local voters="1@127.0.0.1:${cports[0]},2@127.0.0.1:${cports[1]},3@127.0.0.1:${cports[2]}"
    for i in 0 1 2; do
        RINGLOG_LOG=warn,openraft=error "$ringlog" serve --data-dir "$work/$name-$i" \
            --listen "127.0.0.1:${ports[$i]}" --cores 1 --node-id $((i + 1)) --voters "$voters" \
            --cluster-listen "127.0.0.1:${cports[$i]}" >"$work/$name-$i.log" 2>&1 &
        pids+=($!)
    done
    local bootstrap="127.0.0.1:${ports[0]}" live=0
    for _ in $(seq 1 150); do
        live=$("$ringlog" -b "$bootstrap" cluster describe 2>/dev/null | grep -c '^[123]	' || true)
        [ "$live" = 3 ] && break
        sleep 0.2
    done
    [ "$live" = 3 ] || { echo "cluster-ab: $name: the three brokers did not come up" >&2; exit 1; }
    "$ringlog" -b "$bootstrap" topic create bench --partitions "$PARTITIONS" --replicas 3 \
        --config min.insync.replicas=2 >/dev/null
    "$LOADGEN" run --bootstrap "$bootstrap" --consumers 0 --replication-factor 3 \
        --partitions "$PARTITIONS" --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" \
        --topic bench --out "$OUT" --name "$name" --quiet || true
    stop_all
    rm -rf "$work/$name"-*
}

probe disk-before
for pair in $(seq 1 "$PAIRS"); do
    run_cluster "$BEFORE" "before-$pair"
    run_cluster "$AFTER" "after-$pair"
done
probe disk-after

python3 - "$OUT" "$PAIRS" "$RATE" "${BEFORE_LABEL:-$BEFORE}" "${AFTER_LABEL:-$AFTER}" <<'EOF'
import json, statistics, sys
out, pairs, rate, before, after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
lines = [f"# Before/after: three brokers, RF 3, {rate} msg/s, {pairs} alternating pairs", ""]
lines.append(f"before: `{before}`; after: `{after}`. Producers only, acks=all, 100-byte records,")
lines.append("min.insync.replicas 2, every broker `--cores 1`; produce latency from each record's")
lines.append("intended send time. The disk alone (`loadgen disk-probe`, 64 KiB O_DIRECT writes, each")
lines.append("followed by fdatasync), before and after the runs:")
lines.append("")
for name in ("disk-before", "disk-after"):
    try:
        lines.append("- " + open(f"{out}/{name}.txt").read().strip().splitlines()[-1])
    except (FileNotFoundError, IndexError):
        lines.append(f"- {name}: not measured")
lines.append("")
lines.append("| build | msg/s achieved | p50 ms | p90 ms | p99 ms | p99.9 ms |")
lines.append("|---|---|---|---|---|---|")
medians = {}
for side in ("before", "after"):
    runs = []
    for pair in range(1, pairs + 1):
        try:
            with open(f"{out}/{side}-{pair}.json") as f:
                runs.append(json.load(f))
        except FileNotFoundError:
            pass
    if not runs:
        lines.append(f"| {side} | no run | | | | |")
        continue
    cols = [[r["produced"]["records_per_s"] for r in runs]] + [
        [r["produce_latency"][k] for r in runs] for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms")
    ]
    medians[side] = [statistics.median(c) for c in cols]
    cell = lambda c, f: f.format(statistics.median(c)) + " (" + ", ".join(f.format(x) for x in c) + ")"
    lines.append(f"| {side} | " + " | ".join([cell(cols[0], "{:.0f}")] + [cell(c, "{:.2f}") for c in cols[1:]]) + " |")
if len(medians) == 2:
    ratios = [a / b if b else float("nan") for a, b in zip(medians["after"], medians["before"])]
    lines.append("| after / before | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
text = "\n".join(lines) + "\n"
open(f"{out}/summary.md", "w").write(text)
print(text)
EOF
