//! Pipelined connections and shard placement, on the wire against a real `ringlog serve`:
//! many produce requests in flight on one connection are answered in request order and
//! stored in the order they were sent (also across segment rolls and with a barrier request
//! in between), and a restart with fewer or more `--cores` than the topics were created
//! with keeps every acknowledged record readable and never acknowledges a produce that was
//! not stored.

mod broker;

use std::collections::BTreeMap;
use std::time::Duration;

use broker::BrokerProcess;
use bytes::{Buf, Bytes};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use protocol::client::{encode_request, response_header_version, Client};
use protocol::record_batch::{BatchHeader, RecordBatchBuilder};
use protocol::records::Records;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PRODUCE_VERSION: i16 = 9;
const LIST_OFFSETS_VERSION: i16 = 7;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// A batch whose values are `tag-0`, `tag-1`, ... padded to `value_bytes`.
fn batch(tag: &str, records: usize, value_bytes: usize) -> Bytes {
    let mut builder = RecordBatchBuilder::new(1_700_000_000_000);
    for i in 0..records {
        let mut value = format!("{tag}-{i}|").into_bytes();
        value.resize(value_bytes.max(value.len()), b'.');
        builder.push(None, Some(&value), 1_700_000_000_000);
    }
    builder.finish().into()
}

fn produce(topic: &str, partition: i32, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// The values of every record of a partition, from offset 0 to its high watermark, each
/// with its offset.
async fn read_partition(address: &str, topic: &str, partition: i32) -> Vec<(i64, String)> {
    let mut client = Client::connect(address, "pipeline-reader").await.unwrap();
    let mut offset = 0;
    let mut values = Vec::new();
    loop {
        let request = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(4 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let response = client.send(&request).await.unwrap();
        let data = &response.responses[0].partitions[0];
        assert_eq!(data.error_code, 0, "fetch {topic}-{partition} at {offset}");
        let records = data.records.clone().unwrap_or_default();
        let mut at = 0;
        while at < records.len() {
            let header = BatchHeader::parse(&records[at..]).unwrap();
            let end = at + header.total_bytes();
            for record in Records::new(&records[at..end]).unwrap() {
                let record = record.unwrap();
                if record.offset >= offset {
                    let value = String::from_utf8_lossy(record.value.unwrap()).into_owned();
                    values.push((record.offset, value));
                }
            }
            offset = header.last_offset() + 1;
            at = end;
        }
        if offset >= data.high_watermark {
            return values;
        }
    }
}

/// The tag and index of a value written by [`batch`].
fn tag_of(value: &str) -> &str {
    value.split('|').next().unwrap()
}

/// One frame off the socket: (correlation id, body after the header).
async fn read_frame<R: Request>(
    stream: &mut (impl AsyncReadExt + Unpin),
    version: i16,
) -> (i32, Bytes) {
    let mut size = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(30), stream.read_exact(&mut size))
        .await
        .expect("an answer within 30 s")
        .expect("the connection stays open");
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).await.unwrap();
    let mut body = Bytes::from(body);
    let header = ResponseHeader::decode(&mut body, response_header_version::<R>(version)).unwrap();
    (header.correlation_id, body)
}

#[tokio::test]
async fn pipelined_produces_are_answered_and_stored_in_order_across_segment_rolls() {
    let broker = BrokerProcess::start(2);
    // Small segments: the 60 requests below roll every partition's segment many times.
    let (ok, _, err) = broker.cli(
        &[
            "topic",
            "create",
            "pipelined",
            "--partitions",
            "2",
            "-c",
            "segment.bytes=20000",
        ],
        "",
    );
    assert!(ok, "{err}");
    let stream = TcpStream::connect(&broker.address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    const REQUESTS: i32 = 60;
    // Every frame is written before any answer is read: up to the broker's in-flight bound
    // they are dispatched together, past it the broker stops reading until answers go out.
    let mut frames = Vec::new();
    let mut sent: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for id in 0..REQUESTS {
        if id == REQUESTS / 2 {
            // A barrier in the middle: answered in its place, after every produce before it.
            let list = ListOffsetsRequest::default()
                .with_replica_id((-1).into())
                .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name("pipelined"))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                    ])]);
            frames.extend_from_slice(
                &encode_request(&list, LIST_OFFSETS_VERSION, id, "pipeline").unwrap(),
            );
            continue;
        }
        let partition = id % 2;
        let records = 1 + (id as usize % 7) * 5;
        let tag = format!("r{id}");
        sent.entry(partition)
            .or_default()
            .extend((0..records).map(|i| format!("{tag}-{i}")));
        let request = produce("pipelined", partition, batch(&tag, records, 200));
        frames
            .extend_from_slice(&encode_request(&request, PRODUCE_VERSION, id, "pipeline").unwrap());
    }
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move { writer.write_all(&frames).await });
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut offset_before_barrier = None;
    for id in 0..REQUESTS {
        if id == REQUESTS / 2 {
            let (correlation_id, mut body) =
                read_frame::<ListOffsetsRequest>(&mut reader, LIST_OFFSETS_VERSION).await;
            assert_eq!(correlation_id, id, "answers come in request order");
            let response = ListOffsetsResponse::decode(&mut body, LIST_OFFSETS_VERSION).unwrap();
            offset_before_barrier = Some(response.topics[0].partitions[0].offset);
            continue;
        }
        let (correlation_id, mut body) =
            read_frame::<ProduceRequest>(&mut reader, PRODUCE_VERSION).await;
        assert_eq!(correlation_id, id, "answers come in request order");
        let response = ProduceResponse::decode(&mut body, PRODUCE_VERSION).unwrap();
        assert!(!body.has_remaining());
        let answer = &response.responses[0].partition_responses[0];
        let partition = id % 2;
        assert_eq!(
            answer.error_code, 0,
            "request {id}: {:?}",
            answer.error_message
        );
        let expected = next_offset.entry(partition).or_insert(0);
        assert_eq!(
            answer.base_offset, *expected,
            "request {id} is appended right after the one sent before it"
        );
        *expected += 1 + (id as i64 % 7) * 5;
    }
    sending.await.unwrap().unwrap();
    // The barrier saw exactly the produces sent before it on partition 0.
    let before: i64 = (0..REQUESTS / 2)
        .filter(|id| id % 2 == 0)
        .map(|id| 1 + (id as i64 % 7) * 5)
        .sum();
    assert_eq!(offset_before_barrier, Some(before));
    for (partition, values) in &sent {
        let stored = read_partition(&broker.address, "pipelined", *partition).await;
        let stored_values: Vec<String> = stored
            .iter()
            .map(|(_, value)| tag_of(value).to_string())
            .collect();
        assert_eq!(
            &stored_values, values,
            "partition {partition} holds what was sent, in order"
        );
        for (at, (offset, _)) in stored.iter().enumerate() {
            assert_eq!(*offset, at as i64);
        }
    }
    let (ok, out, err) = broker.cli(&["topic", "describe", "pipelined"], "");
    assert!(ok, "{err}");
    assert!(!out.is_empty());
    let segments = std::fs::read_dir(broker.data_dir().join("pipelined-0"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.ends_with(".log") && name.starts_with('0')
        })
        .count();
    assert!(
        segments > 3,
        "segments rolled while requests were in flight ({segments})"
    );
}

/// Produces `count` single-record batches to every partition; returns what was acknowledged.
async fn produce_each(
    address: &str,
    topic: &str,
    partitions: i32,
    tag: &str,
    count: usize,
) -> BTreeMap<i32, Vec<String>> {
    let mut client = Client::connect(address, "placement").await.unwrap();
    let mut acked: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for partition in 0..partitions {
        for n in 0..count {
            let tag = format!("{tag}-p{partition}-n{n}");
            let response = client
                .send(&produce(topic, partition, batch(&tag, 1, 10)))
                .await
                .unwrap();
            let answer = &response.responses[0].partition_responses[0];
            assert_eq!(
                answer.error_code, 0,
                "{topic}-{partition}: {:?}",
                answer.error_message
            );
            assert!(
                answer.base_offset >= 0,
                "an acknowledgement carries its offset"
            );
            acked.entry(partition).or_default().push(format!("{tag}-0"));
        }
    }
    acked
}

#[tokio::test]
async fn restart_with_fewer_or_more_cores_keeps_acked_records_and_places_partitions() {
    let mut broker = BrokerProcess::start(2);
    let (ok, _, err) = broker.cli(&["topic", "create", "placed", "--partitions", "4"], "");
    assert!(ok, "{err}");
    let mut expected = produce_each(&broker.address, "placed", 4, "two-cores", 5).await;
    for cores in [1, 3] {
        broker.kill_and_restart_with_cores(cores);
        for partition in 0..4 {
            let stored: Vec<String> = read_partition(&broker.address, "placed", partition)
                .await
                .into_iter()
                .map(|(_, value)| tag_of(&value).to_string())
                .collect();
            assert_eq!(
                stored, expected[&partition],
                "{cores} cores: partition {partition} holds every acknowledged record"
            );
        }
        let more = produce_each(&broker.address, "placed", 4, &format!("{cores}-cores"), 3).await;
        for (partition, values) in more {
            expected.get_mut(&partition).unwrap().extend(values);
        }
    }
    let catalog: serde_json::Value =
        serde_json::from_slice(&std::fs::read(broker.data_dir().join("catalog.json")).unwrap())
            .unwrap();
    let owners = catalog["topics"]["placed"]["partition_shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|owner| owner.as_u64().unwrap())
        .collect::<Vec<_>>();
    assert!(
        owners.iter().all(|owner| *owner < 3),
        "every partition is owned by a shard that exists: {owners:?}"
    );
}

/// One broker per data directory: a second `ringlog serve` on it refuses to start with one
/// clear line and touches nothing; the first keeps serving; after it is killed the lock is
/// free again.
#[tokio::test]
async fn a_second_broker_on_the_same_data_dir_refuses_to_start() {
    let mut broker = BrokerProcess::start(1);
    let (ok, _, err) = broker.cli(&["topic", "create", "locked"], "");
    assert!(ok, "{err}");
    let second = broker::serve_expecting_failure(broker.data_dir());
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("is in use by another ringlog"),
        "one clear line: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let (ok, out, err) = broker.cli(&["topic", "list"], "");
    assert!(
        ok && out.contains("locked"),
        "the first still serves: {out}{err}"
    );
    broker.kill_and_restart();
    let (ok, out, err) = broker.cli(&["topic", "list"], "");
    assert!(
        ok && out.contains("locked"),
        "restarted on the freed lock: {out}{err}"
    );
}

/// Allocated bytes (st_blocks) of every file under `dir`.
fn allocated_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let metadata = entry.metadata().unwrap();
        if metadata.is_dir() {
            total += allocated_bytes(&entry.path());
        } else {
            total += metadata.blocks() * 512;
        }
    }
    total
}

/// Space is reserved in proportion to use: 200 fresh partitions written once take a few MiB
/// each at most, and each one's first acknowledgement is as quick as any other.
#[tokio::test]
async fn fresh_partitions_reserve_little_and_acknowledge_their_first_write_quickly() {
    let broker = BrokerProcess::start(2);
    let (ok, _, err) = broker.cli(&["topic", "create", "many", "--partitions", "200"], "");
    assert!(ok, "{err}");
    let mut client = Client::connect(&broker.address, "fresh").await.unwrap();
    let mut slowest = Duration::ZERO;
    for partition in 0..200 {
        let started = std::time::Instant::now();
        let response = client
            .send(&produce("many", partition, batch("first", 1, 100)))
            .await
            .unwrap();
        slowest = slowest.max(started.elapsed());
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    // Generous bounds for a shared machine; zero-filling 32 MiB per partition took seconds.
    assert!(
        slowest < Duration::from_secs(2),
        "slowest first ack {slowest:?}"
    );
    let used = allocated_bytes(broker.data_dir());
    assert!(
        used < 1024 * 1024 * 1024,
        "200 partitions written once use {used} bytes"
    );
    assert!(
        used / 200 < 8 * 1024 * 1024,
        "{} bytes per partition",
        used / 200
    );
}

/// connections.max.idle.ms and the partial-request timeout (shortened here): a silent
/// connection and one that started a frame and stopped are closed, while a client that
/// keeps talking, with pauses shorter than the limit, keeps working.
#[tokio::test]
async fn idle_and_half_sent_connections_are_closed_and_busy_ones_kept() {
    let broker = BrokerProcess::start_with(
        1,
        &[
            "--connections-max-idle-ms",
            "400",
            "--partial-request-timeout-ms",
            "400",
        ],
    );
    let silent = TcpStream::connect(&broker.address).await.unwrap();
    let mut half = TcpStream::connect(&broker.address).await.unwrap();
    // A 100-byte frame of which 10 bytes arrive.
    half.write_all(&100i32.to_be_bytes()).await.unwrap();
    half.write_all(&[0u8; 10]).await.unwrap();
    let mut client = Client::connect(&broker.address, "talker").await.unwrap();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let metadata = client
            .send(&MetadataRequest::default().with_topics(Some(Vec::new())))
            .await
            .expect("a connection that keeps talking stays open");
        assert!(!metadata.brokers.is_empty());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (what, mut stream) in [("silent", silent), ("half-sent", half)] {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .unwrap_or_else(|_| panic!("the {what} connection is still open after 6.5 s"));
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "the {what} connection was closed: {read:?}"
        );
    }
}
