//! The load generator at and past its limits, against a real ringlog (embedded in the test
//! process): an offered rate far above what the broker takes, requests capped in size on
//! the wire, and a machine whose cores are kept busy. These run apart from `runs.rs`, whose
//! timing-sensitive checks they would disturb.

mod common;

use std::time::Duration;

use common::{broker, runtime, small};
use loadgen::run::{run, BrokerProcess};
use loadgen::workload::Workload;

/// No connection error or refused request, every acknowledged record consumed once and in
/// order, and something acknowledged in the window.
fn assert_delivered(result: &loadgen::result::RunResult) {
    assert!(
        result.checks.errors.is_empty(),
        "{:?}",
        result.checks.errors
    );
    assert!(result.checks.clean(), "{:?}", result.checks);
    assert!(result.produced.records > 0);
}

/// An offered rate far above what the broker can take: the result reports what was
/// achieved, below the offered rate, and FAILs in one line; nothing acknowledged is lost.
#[test]
fn an_offered_rate_beyond_the_broker_is_reported_as_achieved_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let address = broker.address.to_string();
    let runtime = runtime();
    let workload = Workload {
        rate: 20_000_000,
        duration: Duration::from_millis(300),
        warmup: Duration::from_millis(100),
        target_rate: 20_000_000,
        buffer_bytes: 4 * 1024 * 1024,
        ..small("overload")
    };
    let result = runtime
        .block_on(run(&address, workload, BrokerProcess::Embedded, true))
        .unwrap();
    let offered = result.produced.offered_per_s.unwrap();
    assert!((offered - 20_000_000.0).abs() < 10.0, "offered {offered}");
    assert!(
        result.produced.records_per_s < offered * 0.99,
        "achieved {} of {offered}",
        result.produced.records_per_s
    );
    assert!(result.produced.backlog_at_end > 0);
    assert!(result.produced.drained_records > 0);
    assert!(!result.pass);
    assert!(
        result
            .verdict
            .starts_with("FAIL: offered 20,000,000 msg/s, achieved "),
        "{}",
        result.verdict
    );
    assert!(result.checks.clean(), "{:?}", result.checks);
    drop(runtime);
    broker.shutdown();
}

/// Requests stay within --max-request-bytes on the wire: a broker whose frame limit
/// (socket.request.max.bytes) is just above it takes every request of a run that falls far
/// behind (before, everything due went into one request and the broker refused it).
#[test]
fn produce_requests_stay_within_max_request_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = engine::server::Broker::start(engine::server::BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        cores: 2,
        pin_cores: false,
        max_request_bytes: 66 * 1024,
        ..engine::server::BrokerConfig::default()
    })
    .expect("broker starts");
    let address = broker.address.to_string();
    let runtime = runtime();
    let workload = Workload {
        rate: 2_000_000,
        duration: Duration::from_millis(500),
        warmup: Duration::from_millis(200),
        batch_bytes: 16 * 1024,
        max_request_bytes: 64 * 1024,
        buffer_bytes: 4 * 1024 * 1024,
        ..small("capped")
    };
    let result = runtime
        .block_on(run(&address, workload, BrokerProcess::Embedded, true))
        .unwrap();
    assert_delivered(&result);
    drop(runtime);
    broker.shutdown();
}

/// With both cores kept busy by other threads, a run completes with no connection error,
/// no refused request and nothing missing (its latency may fail the target).
#[test]
fn a_run_on_a_busy_machine_completes_with_nothing_missing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let address = broker.address.to_string();
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let busy = busy.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while busy.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
                }
            })
        })
        .collect();
    let runtime = runtime();
    let workload = Workload {
        rate: 200_000,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        buffer_bytes: 4 * 1024 * 1024,
        ..small("busy")
    };
    let result = runtime.block_on(run(&address, workload, BrokerProcess::Embedded, true));
    busy.store(false, std::sync::atomic::Ordering::Relaxed);
    for spinner in spinners {
        spinner.join().unwrap();
    }
    let result = result.unwrap();
    assert_delivered(&result);
    drop(runtime);
    broker.shutdown();
}

/// `loadgen disk-probe` measures the disk alone, with files side by side and spinning
/// threads beside it when asked:
/// one line with the writes it made, their durable MB/s and the fdatasync figures; its file
/// is gone afterwards; a zero duration is a settings error.
#[test]
fn the_disk_probe_measures_beside_busy_threads_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .arg("disk-probe")
            .args(args)
            .arg("--dir")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let probe = run(&[
        "--duration",
        "1s",
        "--write-bytes",
        "16k",
        "--busy-threads",
        "1",
        "--files",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let words: Vec<&str> = stdout.split_whitespace().collect();
    let after = |word: &str| -> f64 {
        let at = words.iter().position(|w| *w == word).unwrap_or_else(|| {
            panic!("no '{word}' in {stdout}");
        });
        words[at + 1].trim_end_matches(',').parse().unwrap()
    };
    let writes = words[words.iter().position(|w| *w == "writes").unwrap() - 1];
    assert!(writes.parse::<u64>().unwrap() > 0, "{stdout}");
    assert!(stdout.contains("of 16 KiB + fdatasync"), "{stdout}");
    assert!(
        stdout.contains("to 2 files side by side with 1 busy threads"),
        "{stdout}"
    );
    assert!(
        after("p50") > 0.0 && after("p99") >= after("p50"),
        "{stdout}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // Into fallocated blocks: each written once, the files gone afterwards.
    let fallocated = run(&["--duration", "1s", "--write-bytes", "64k", "--fallocated"]);
    let stdout = String::from_utf8_lossy(&fallocated.stdout);
    assert!(
        fallocated.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&fallocated.stderr)
    );
    assert!(
        stdout.contains("of 64 KiB + fdatasync into fallocated blocks"),
        "{stdout}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let refused = run(&["--duration", "0s"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--duration must be above zero"));
}
