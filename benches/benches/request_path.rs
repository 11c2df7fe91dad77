//! The broker's request path end to end on one shard: a Produce of one batch of 1000
//! records of 100 bytes, sent over loopback, decoded, validated record by record, routed,
//! appended to a log on tmpfs (page cache only, acks=1), and answered. Reported per record;
//! the broker runs with `--cores 1`, so records/s is per core (the client's own work is on
//! the other core).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use loadgen::payload::BatchTemplate;
use ringlog_benches::harness::{produce_request, LocalBroker};

const RECORDS: usize = 1000;

fn bench_produce_request(c: &mut Criterion) {
    let LocalBroker {
        broker,
        runtime,
        mut client,
        dir: _dir,
    } = LocalBroker::start(1, "bench", 1);
    let batch: bytes::Bytes = BatchTemplate::new(RECORDS, 100)
        .batch(0, 1_700_000_000_000)
        .into();
    let request = produce_request("bench", 0, batch, 1);
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
    let LocalBroker {
        broker,
        runtime,
        mut client,
        dir: _dir,
    } = LocalBroker::start(2, "hop", 2);
    let batch: bytes::Bytes = BatchTemplate::new(1, 100)
        .batch(0, 1_700_000_000_000)
        .into();
    let mut group = c.benchmark_group("cross_shard_hop");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    for partition in [0, 1] {
        let request = produce_request("hop", partition, batch.clone(), 1);
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

/// Encoding a Fetch response as the broker answers a consumer at line rate: 8 partitions of
/// 1 MiB of records each, version 12 (flexible), into one frame. Reported per byte of
/// records; every byte must be copied once into the frame, so the ideal is one memcpy.
fn bench_fetch_response_encode(c: &mut Criterion) {
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;
    const PARTITIONS: i32 = 8;
    const RECORD_BYTES: usize = 1 << 20;
    let records = bytes::Bytes::from(vec![7u8; RECORD_BYTES]);
    let response = ResponseKind::Fetch(FetchResponse::default().with_responses(vec![
        FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("bench")))
            .with_partitions(
                (0..PARTITIONS)
                    .map(|partition| {
                        PartitionData::default()
                            .with_partition_index(partition)
                            .with_high_watermark(1_000_000)
                            .with_records(Some(records.clone()))
                    })
                    .collect(),
            ),
    ]));
    let mut group = c.benchmark_group("fetch_response");
    group.throughput(Throughput::Bytes(PARTITIONS as u64 * RECORD_BYTES as u64));
    group.sample_size(30);
    group.bench_function("encode_8x1MiB_v12", |b| {
        b.iter(|| {
            protocol::response::encode_response(7, ApiKey::Fetch, 12, &response)
                .expect("encode")
                .len()
        })
    });
    group.finish();
}

/// Encoding a Produce request as the load generator sends one at its maximum rate: 8
/// partitions of a 64 KiB batch each, version 9 (flexible). Reported per byte of records:
/// into one frame (every batch copied in) against the frame as chunks, the batches sent
/// from their own buffers (`encode_request_chunks`, what `loadgen` writes).
fn bench_produce_request_encode(c: &mut Criterion) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    const PARTITIONS: usize = 8;
    const BATCH_BYTES: usize = 64 << 10;
    let batches: Vec<bytes::Bytes> = (0..PARTITIONS)
        .map(|partition| bytes::Bytes::from(vec![partition as u8; BATCH_BYTES]))
        .collect();
    let request = |records: &dyn Fn(&bytes::Bytes) -> bytes::Bytes| {
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("bench")))
                .with_partition_data(
                    batches
                        .iter()
                        .enumerate()
                        .map(|(partition, batch)| {
                            PartitionProduceData::default()
                                .with_index(partition as i32)
                                .with_records(Some(records(batch)))
                        })
                        .collect(),
                )])
    };
    let whole = request(&|batch| batch.clone());
    let standing_in = request(&|batch| {
        protocol::response::records_placeholder(batch.len()).expect("a placeholder")
    });
    let mut group = c.benchmark_group("produce_request");
    group.throughput(Throughput::Bytes((PARTITIONS * BATCH_BYTES) as u64));
    group.sample_size(30);
    group.bench_function("encode_8x64KiB_v9_one_frame", |b| {
        b.iter(|| {
            protocol::client::encode_request(&whole, 9, 7, "bench")
                .expect("encode")
                .len()
        })
    });
    group.bench_function("encode_8x64KiB_v9_chunks", |b| {
        b.iter(|| {
            let lists = batches.iter().map(|batch| vec![batch.clone()]).collect();
            protocol::client::encode_request_chunks(&standing_in, 9, 7, "bench", lists)
                .expect("encode")
                .len()
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_produce_request,
    bench_cross_shard_hop,
    bench_fetch_response_encode,
    bench_produce_request_encode
);
criterion_main!(benches);
