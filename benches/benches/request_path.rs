//! The broker's request path end to end on one shard: a Produce of one batch of 1000
//! records of 100 bytes, sent over loopback, decoded, validated record by record, routed,
//! appended to a log on tmpfs (page cache only, acks=1), and answered. Reported per record;
//! the broker runs with `--cores 1`, so records/s is per core (the client's own work is on
//! the other core).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::io::Backend;
use engine::server::{Broker, BrokerConfig};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{CreateTopicsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use loadgen::payload::BatchTemplate;
use protocol::client::Client;

const RECORDS: usize = 1000;

fn data_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tmpfs dir")
    } else {
        tempfile::tempdir_in("target").expect("dir")
    }
}

fn bench_produce_request(c: &mut Criterion) {
    let dir = data_dir();
    let broker = Broker::start(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        cores: 1,
        pin_cores: false,
        io_backend: Backend::Uring,
        ..BrokerConfig::default()
    })
    .expect("broker starts");
    let address = broker.address.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let topic = TopicName(StrBytes::from_static_str("bench"));
    let mut client = runtime.block_on(async {
        let mut client = Client::connect(&address, "bench").await.expect("connect");
        let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(topic.clone())
            .with_num_partitions(1)
            .with_replication_factor(1)]);
        client.send(&create).await.expect("topic");
        client
    });
    let batch: bytes::Bytes = BatchTemplate::new(RECORDS, 100)
        .batch(0, 1_700_000_000_000)
        .into();
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic)
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let mut group = c.benchmark_group("request_path");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("produce_1000x100B_acks1_one_core", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iterations {
                    let response = client.send(&request).await.expect("produce");
                    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    drop(client);
    broker.shutdown();
}

/// The cost of a hop between shards: with two shards, a topic with two partitions has one
/// partition on each, so whichever shard accepted the connection, produce to one partition
/// is handled in place and produce to the other hops to the other core and back. Small
/// (one-record) requests, acks=1, so the hop is a visible share of the time.
fn bench_cross_shard_hop(c: &mut Criterion) {
    let dir = data_dir();
    let broker = Broker::start(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        cores: 2,
        pin_cores: true,
        io_backend: Backend::Uring,
        ..BrokerConfig::default()
    })
    .expect("broker starts");
    let address = broker.address.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let topic = TopicName(StrBytes::from_static_str("hop"));
    let mut client = runtime.block_on(async {
        let mut client = Client::connect(&address, "bench").await.expect("connect");
        let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(topic.clone())
            .with_num_partitions(2)
            .with_replication_factor(1)]);
        client.send(&create).await.expect("topic");
        client
    });
    let batch: bytes::Bytes = BatchTemplate::new(1, 100)
        .batch(0, 1_700_000_000_000)
        .into();
    let mut group = c.benchmark_group("cross_shard_hop");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    for partition in [0, 1] {
        let request = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic.clone())
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch.clone()))])]);
        group.bench_function(format!("produce_1_record_partition_{partition}"), |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iterations {
                        client.send(&request).await.expect("produce");
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
    drop(client);
    broker.shutdown();
}

criterion_group!(benches, bench_produce_request, bench_cross_shard_hop);
criterion_main!(benches);
