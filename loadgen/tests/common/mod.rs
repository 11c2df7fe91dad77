//! Helpers shared by the load generator's tests: an embedded broker and a small workload.
#![allow(dead_code)]

use std::time::Duration;

use loadgen::workload::Workload;

pub fn broker(dir: &std::path::Path) -> engine::server::Broker {
    let config = engine::server::BrokerConfig {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        cores: 2,
        pin_cores: false,
        ..engine::server::BrokerConfig::default()
    };
    engine::server::Broker::start(config).expect("broker starts")
}

pub fn small(topic: &str) -> Workload {
    Workload {
        partitions: 4,
        rate: 20_000,
        duration: Duration::from_millis(1500),
        warmup: Duration::from_millis(500),
        batch_bytes: 16 * 1024,
        p99_target_ms: 10_000.0,
        target_rate: 20_000,
        ..Workload::standard(topic)
    }
}

/// A runtime like loadgen's own: two workers whose threads are named "loadgen" (the
/// embedded broker's CPU is everything else).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("loadgen")
        .enable_all()
        .build()
        .unwrap()
}
