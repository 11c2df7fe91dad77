//! Produce latency percentiles with `--cores 1` and `--cores 2`, and what a hop between
//! shards costs. Writes `results/hop_latency.json` and `results/hop_latency.md`.
//!
//! Usage: `cargo run --release -p ringlog-benches --bin hop_latency [requests]`
//!
//! An in-process broker on tmpfs (so the disk is out of the picture) gets one-record
//! Produce requests (acks=1), one at a time over one loopback connection, alternating
//! between the two partitions of a topic. With two shards each partition has its own owner,
//! so one partition is served on the connection's shard and the other hops to the other
//! core and back; the partition with the lower median is the local one.

use std::time::Instant;

use hdrhistogram::Histogram;
use loadgen::payload::BatchTemplate;
use ringlog_benches::harness::{produce_request, LocalBroker};
use serde_json::json;

struct Percentiles {
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
}

fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    Percentiles {
        p50_us: histogram.value_at_quantile(0.5),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
        max_us: histogram.max(),
    }
}

/// Latency histograms (us) of produce to partition 0 and partition 1.
fn measure(cores: usize, requests: usize) -> [Histogram<u64>; 2] {
    let LocalBroker {
        broker,
        runtime,
        mut client,
        dir,
    } = LocalBroker::start(cores, "hop", 2);
    let batch: bytes::Bytes = BatchTemplate::new(1, 100)
        .batch(0, 1_700_000_000_000)
        .into();
    let produce = [
        produce_request("hop", 0, batch.clone(), 1),
        produce_request("hop", 1, batch, 1),
    ];
    let histograms = runtime.block_on(async {
        let mut histograms = [
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
        ];
        // Warm up, then measure.
        for round in 0..requests + 2_000 {
            let partition = round % 2;
            let started = Instant::now();
            let response = client.send(&produce[partition]).await.expect("produce");
            let elapsed = started.elapsed();
            assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
            if round >= 2_000 {
                histograms[partition]
                    .record(elapsed.as_micros().max(1) as u64)
                    .expect("in range");
            }
        }
        histograms
    });
    drop(client);
    broker.shutdown();
    drop(dir);
    histograms
}

const RUNS: usize = 3;

/// One run: percentiles for (one core, two cores local, two cores remote).
fn run(requests: usize) -> [Percentiles; 3] {
    let one = measure(1, requests);
    let two = measure(2, requests);
    let (local, remote) = if two[0].value_at_quantile(0.5) <= two[1].value_at_quantile(0.5) {
        (&two[0], &two[1])
    } else {
        (&two[1], &two[0])
    };
    let mut one_core = one[0].clone();
    one_core.add(&one[1]).expect("same bounds");
    [
        percentiles(&one_core),
        percentiles(local),
        percentiles(remote),
    ]
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

fn main() {
    let requests: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(40_000);
    let runs: Vec<[Percentiles; 3]> = (0..RUNS).map(|_| run(requests)).collect();
    let pick = |row: usize, field: fn(&Percentiles) -> u64| {
        median(runs.iter().map(|run| field(&run[row])).collect())
    };
    let row = |row: usize| Percentiles {
        p50_us: pick(row, |p| p.p50_us),
        p99_us: pick(row, |p| p.p99_us),
        p999_us: pick(row, |p| p.p999_us),
        max_us: pick(row, |p| p.max_us),
    };
    let rows = [
        ("--cores 1 (every request local)", row(0)),
        ("--cores 2, partition on the connection's shard", row(1)),
        ("--cores 2, partition on the other shard (hop)", row(2)),
    ];
    let mut table =
        String::from("| setup | p50 us | p99 us | p99.9 us | max us |\n|---|---|---|---|---|\n");
    for (name, p) in &rows {
        table.push_str(&format!(
            "| {name} | {} | {} | {} | {} |\n",
            p.p50_us, p.p99_us, p.p999_us, p.max_us
        ));
    }
    let hop_p50 = rows[2].1.p50_us as i64 - rows[1].1.p50_us as i64;
    let hop_p99 = rows[2].1.p99_us as i64 - rows[1].1.p99_us as i64;
    let markdown = format!(
        "# Produce latency and the cost of a hop between shards\n\n\
         `cargo run --release -p ringlog-benches --bin hop_latency {requests}`: {requests} one-record Produce \
         requests (acks=1, tmpfs) per setup, one at a time over one loopback connection, alternating between \
         the two partitions of a topic; the client shares the two cores with the broker. Each figure is the \
         median of {RUNS} runs.\n\n{table}\n\
         A hop (there and back) adds {hop_p50} us at the median and {hop_p99} us at p99.\n"
    );
    let json = json!({
        "command": format!("cargo run --release -p ringlog-benches --bin hop_latency {requests}"),
        "requests_per_setup": requests,
        "runs": RUNS,
        "rows": rows.iter().map(|(name, p)| json!({
            "setup": name, "p50_us": p.p50_us, "p99_us": p.p99_us, "p999_us": p.p999_us, "max_us": p.max_us,
        })).collect::<Vec<_>>(),
        "hop_p50_us": hop_p50,
        "hop_p99_us": hop_p99,
    });
    std::fs::create_dir_all("results").expect("results dir");
    std::fs::write("results/hop_latency.md", &markdown).expect("write markdown");
    std::fs::write(
        "results/hop_latency.json",
        serde_json::to_string_pretty(&json).expect("json"),
    )
    .expect("write json");
    println!("{markdown}");
}
