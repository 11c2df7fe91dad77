//! The broker on the wire, with the protocol crate's client and raw sockets: version
//! negotiation, bad frames and bad requests (each answered with its Kafka error or a closed
//! connection, the broker serving on), produce/fetch edge cases, long polling, and the CLI.

mod broker;

use std::time::{Duration, Instant};

use broker::BrokerProcess;
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use protocol::client::{encode_request, Client};
use protocol::record_batch::RecordBatchBuilder;
use protocol::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn batch(values: &[&str]) -> Bytes {
    let mut builder = RecordBatchBuilder::new(1_700_000_000_000);
    for value in values {
        builder.push(None, Some(value.as_bytes()), 1_700_000_000_000);
    }
    builder.finish().into()
}

fn produce_request(topic: &str, partition: i32, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

fn fetch_request(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

async fn produce_error(client: &mut Client, request: &ProduceRequest) -> (i16, i64) {
    let response = client.send(request).await.expect("produce answered");
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

/// Sends raw bytes; returns the raw response frame, or None if the broker closed.
async fn raw_round_trip(address: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut size = [0u8; 4];
    match tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut size)).await {
        Ok(Ok(_)) => {}
        _ => return None,
    }
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(body)
}

#[tokio::test]
async fn api_versions_is_honest_and_refusals_carry_the_right_codes() {
    let broker = BrokerProcess::start(2);
    let client = Client::connect(&broker.address, "wire-test")
        .await
        .expect("connect");
    assert_eq!(client.version_for::<FetchRequest>(i16::MAX).unwrap(), 12);
    assert_eq!(client.version_for::<ProduceRequest>(i16::MAX).unwrap(), 9);

    // ApiVersions newer than ours: v0 answer, UNSUPPORTED_VERSION, and the table (KIP-511).
    let mut frame = encode_request(&ApiVersionsRequest::default(), 3, 41, "new-client").unwrap();
    frame[6..8].copy_from_slice(&99i16.to_be_bytes());
    let body = raw_round_trip(&broker.address, &frame)
        .await
        .expect("answered");
    assert_eq!(&body[..4], &41i32.to_be_bytes());
    let response = ApiVersionsResponse::decode(&mut Bytes::from(body[4..].to_vec()), 0).unwrap();
    assert_eq!(response.error_code, ErrorCode::UnsupportedVersion.code());
    assert!(response
        .api_keys
        .iter()
        .any(|api| api.api_key == ApiKey::Fetch as i16 && api.max_version == 12));

    // An unknown API key and an unsupported version get UNSUPPORTED_VERSION with their id.
    let mut unknown = encode_request(&MetadataRequest::default(), 9, 42, "x").unwrap();
    unknown[4..6].copy_from_slice(&999i16.to_be_bytes());
    let body = raw_round_trip(&broker.address, &unknown)
        .await
        .expect("answered");
    assert_eq!(
        body,
        [&42i32.to_be_bytes()[..], &35i16.to_be_bytes()[..]].concat()
    );
    let mut too_new = encode_request(&MetadataRequest::default(), 9, 43, "x").unwrap();
    too_new[6..8].copy_from_slice(&13i16.to_be_bytes());
    let body = raw_round_trip(&broker.address, &too_new)
        .await
        .expect("answered");
    assert_eq!(
        body,
        [&43i32.to_be_bytes()[..], &35i16.to_be_bytes()[..]].concat()
    );

    // A frame over socket.request.max.bytes and a truncated request close the connection.
    let oversized = (200 * 1024 * 1024i32).to_be_bytes();
    assert_eq!(raw_round_trip(&broker.address, &oversized).await, None);
    let whole = encode_request(&MetadataRequest::default().with_topics(None), 9, 44, "x").unwrap();
    let mut truncated = whole[4..12].to_vec();
    let mut framed = (truncated.len() as i32).to_be_bytes().to_vec();
    framed.append(&mut truncated);
    assert_eq!(raw_round_trip(&broker.address, &framed).await, None);

    // The broker still serves everyone else.
    let mut client = Client::connect(&broker.address, "after")
        .await
        .expect("still serving");
    let metadata = client
        .send(&MetadataRequest::default().with_topics(None))
        .await
        .unwrap();
    assert_eq!(metadata.brokers.len(), 1);
}

#[tokio::test]
async fn bad_produce_requests_get_their_error_and_store_nothing() {
    let broker = BrokerProcess::start(2);
    let mut client = Client::connect(&broker.address, "wire-test").await.unwrap();
    let (ok, _, stderr) = broker.cli(&["topic", "create", "orders", "--partitions", "2"], "");
    assert!(ok, "{stderr}");
    let (code, base) = produce_error(
        &mut client,
        &produce_request("orders", 0, batch(&["a", "b"])),
    )
    .await;
    assert_eq!((code, base), (0, 0));

    let mut corrupt = batch(&["c"]).to_vec();
    *corrupt.last_mut().unwrap() ^= 0x55;
    let cases = [
        (
            produce_request("orders", 0, corrupt.into()),
            ErrorCode::CorruptMessage,
        ),
        (
            produce_request("orders", 7, batch(&["x"])),
            ErrorCode::UnknownTopicOrPartition,
        ),
        (
            produce_request("no-such-topic", 0, batch(&["x"])),
            ErrorCode::UnknownTopicOrPartition,
        ),
        (
            produce_request("orders", 0, Bytes::from_static(b"short")),
            ErrorCode::CorruptMessage,
        ),
        (
            produce_request("orders", 0, batch(&["x"])).with_acks(2),
            ErrorCode::InvalidRequiredAcks,
        ),
    ];
    for (request, expected) in cases {
        let (code, _) = produce_error(&mut client, &request).await;
        assert_eq!(code, expected.code(), "{expected:?}");
    }
    // Nothing of the refused batches was stored: offset 2 is the next one.
    let (code, base) =
        produce_error(&mut client, &produce_request("orders", 0, batch(&["c"]))).await;
    assert_eq!((code, base), (0, 2));
    let response = client
        .send(&fetch_request("orders", 0, 0, 0))
        .await
        .unwrap();
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.high_watermark, 3);
    // Out of range.
    let response = client
        .send(&fetch_request("orders", 0, 99, 0))
        .await
        .unwrap();
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ErrorCode::OffsetOutOfRange.code()
    );
}

#[tokio::test]
async fn fetch_long_polls_until_data_arrives_or_max_wait() {
    let broker = BrokerProcess::start(2);
    let (ok, _, stderr) = broker.cli(&["topic", "create", "tail", "--partitions", "2"], "");
    assert!(ok, "{stderr}");
    let mut consumer = Client::connect(&broker.address, "consumer").await.unwrap();
    let started = Instant::now();
    let response = consumer
        .send(&fetch_request("tail", 1, 0, 300))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(response.responses[0].partitions[0]
        .records
        .as_ref()
        .unwrap()
        .is_empty());
    assert!(
        waited >= Duration::from_millis(280),
        "waited only {waited:?}"
    );

    let address = broker.address.clone();
    let producer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut producer = Client::connect(&address, "producer").await.unwrap();
        producer
            .send(&produce_request("tail", 1, batch(&["wake up"])))
            .await
            .unwrap();
    });
    let started = Instant::now();
    let response = consumer
        .send(&fetch_request("tail", 1, 0, 10_000))
        .await
        .unwrap();
    let waited = started.elapsed();
    producer.await.unwrap();
    let records = response.responses[0].partitions[0].records.clone().unwrap();
    assert!(!records.is_empty(), "data arrived during the wait");
    assert!(
        waited < Duration::from_secs(5),
        "answered when data arrived, not at max wait ({waited:?})"
    );
}

#[test]
fn cli_round_trip_with_keys_headers_and_topic_admin() {
    let broker = BrokerProcess::start(2);
    let (ok, out, err) = broker.cli(
        &[
            "topic",
            "create",
            "payment-done",
            "--partitions",
            "3",
            "-c",
            "retention.ms=86400000",
        ],
        "",
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("created topic payment-done with 3 partitions"),
        "{out}"
    );
    let (ok, _, err) = broker.cli(
        &["produce", "payment-done", "-K", ":", "-H", "source=cli"],
        "alice:paid 10\nbob:paid 20\nalice:paid 30\n",
    );
    assert!(ok, "{err}");
    let (ok, out, err) = broker.cli(
        &[
            "consume",
            "payment-done",
            "--from-beginning",
            "-e",
            "-f",
            "%k=%s %h",
        ],
        "",
    );
    assert!(ok, "{err}");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "alice=paid 10 source=cli",
            "alice=paid 30 source=cli",
            "bob=paid 20 source=cli"
        ]
    );
    // Same key, same partition, in order.
    let (_, out, _) = broker.cli(
        &[
            "consume",
            "payment-done",
            "--from-beginning",
            "-e",
            "-f",
            "%k %p %o %s",
        ],
        "",
    );
    let alice: Vec<Vec<&str>> = out
        .lines()
        .filter(|line| line.starts_with("alice"))
        .map(|line| line.splitn(4, ' ').collect())
        .collect();
    let alice_partition = protocol::partitioner::partition_for_key(b"alice", 3).to_string();
    assert_eq!(alice.len(), 2, "{out}");
    assert!(
        alice.iter().all(|fields| fields[1] == alice_partition),
        "{out}"
    );
    let offsets: Vec<i64> = alice
        .iter()
        .map(|fields| fields[2].parse().unwrap())
        .collect();
    assert!(offsets[0] < offsets[1], "{out}");
    assert_eq!((alice[0][3], alice[1][3]), ("paid 10", "paid 30"));
    let (ok, out, _) = broker.cli(&["topic", "describe", "payment-done"], "");
    assert!(ok && out.contains("partitions 3"), "{out}");
    let (ok, out, _) = broker.cli(&["topic", "list"], "");
    assert!(ok && out.contains("payment-done\t3 partitions"), "{out}");
    // Errors are one clear line.
    let (ok, _, err) = broker.cli(&["topic", "create", "payment-done"], "");
    assert!(!ok && err.contains("TopicAlreadyExists"), "{err}");
    let (ok, _, err) = broker.cli(
        &["topic", "create", "x", "-c", "cleanup.policy=compact"],
        "",
    );
    assert!(!ok && err.contains("not implemented by ringlog"), "{err}");
    let (ok, _, _) = broker.cli(&["topic", "delete", "payment-done"], "");
    assert!(ok);
    assert!(
        !broker.data_dir().join("payment-done-0").exists(),
        "partition data deleted"
    );
    let (ok, _, err) = broker.cli(&["consume", "payment-done", "-e"], "");
    assert!(!ok && err.contains("UnknownTopicOrPartition"), "{err}");
}
