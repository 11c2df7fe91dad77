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
use protocol::record_batch::{compute_crc, RecordBatchBuilder};
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
    // Whole and checksummed, but three bytes follow its last record (Kafka refuses it too).
    let mut trailing = batch(&["t"]).to_vec();
    trailing.extend_from_slice(b"xyz");
    let batch_length = (trailing.len() - 12) as i32;
    trailing[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = compute_crc(&trailing);
    trailing[17..21].copy_from_slice(&crc.to_be_bytes());
    let cases = [
        (
            produce_request("orders", 0, trailing.into()),
            ErrorCode::InvalidRecord,
        ),
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

/// Every supported version of every API is answered (a field a version cannot carry would
/// make the response fail to encode and the connection close).
#[tokio::test]
async fn every_supported_version_of_every_api_is_answered() {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;

    let broker = BrokerProcess::start(2);
    let mut client = Client::connect(&broker.address, "sweep").await.unwrap();
    let range = |key: ApiKey| {
        let api = protocol::versions::supported(key).unwrap();
        api.min_version..=api.max_version
    };
    for version in range(ApiKey::ApiVersions) {
        let response = client
            .send_version(&ApiVersionsRequest::default(), version)
            .await
            .unwrap();
        assert_eq!(response.error_code, 0, "ApiVersions v{version}");
    }
    for version in range(ApiKey::CreateTopics) {
        let topic = format!("sweep-{version}");
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(name(&topic))
                .with_num_partitions(2)
                .with_replication_factor(1)]);
        let response = client.send_version(&request, version).await.unwrap();
        assert_eq!(response.topics[0].error_code, 0, "CreateTopics v{version}");
    }
    for version in range(ApiKey::Metadata) {
        let request = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("sweep-2"))),
        ]));
        let response = client.send_version(&request, version).await.unwrap();
        assert_eq!(
            response.topics[0].partitions.len(),
            2,
            "Metadata v{version}"
        );
    }
    for version in range(ApiKey::Produce) {
        let response = client
            .send_version(&produce_request("sweep-2", 0, batch(&["v"])), version)
            .await
            .unwrap();
        assert_eq!(
            response.responses[0].partition_responses[0].error_code, 0,
            "Produce v{version}"
        );
    }
    for version in range(ApiKey::Fetch) {
        let response = client
            .send_version(&fetch_request("sweep-2", 0, 0, 0), version)
            .await
            .unwrap();
        let partition = &response.responses[0].partitions[0];
        assert_eq!(
            (partition.error_code, partition.high_watermark),
            (0, 7),
            "Fetch v{version}"
        );
    }
    for version in range(ApiKey::ListOffsets) {
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name("sweep-2"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]);
        let response = client.send_version(&request, version).await.unwrap();
        assert_eq!(
            response.topics[0].partitions[0].offset, 7,
            "ListOffsets v{version}"
        );
    }
    for version in range(ApiKey::DescribeConfigs) {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("sweep-2")),
        ]);
        let response = client.send_version(&request, version).await.unwrap();
        assert!(
            response.results[0]
                .configs
                .iter()
                .any(|config| config.name.as_str() == "retention.ms"),
            "DescribeConfigs v{version}"
        );
    }
    // Broker resources: this broker's id or "" (the cluster-wide defaults); another id or a
    // name that is no id is INVALID_REQUEST; any group gets its defaults.
    for (resource_type, name, error, configs) in [
        (4, "0", 0, true),
        (4, "", 0, false),
        (4, "7", ErrorCode::InvalidRequest.code(), false),
        (4, "one", ErrorCode::InvalidRequest.code(), false),
        (32, "any-group", 0, true),
    ] {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_static_str(name)),
        ]);
        let response = client.send(&request).await.unwrap();
        let result = &response.results[0];
        assert_eq!(
            result.error_code, error,
            "{resource_type} '{name}': {result:?}"
        );
        assert_eq!(
            !result.configs.is_empty(),
            configs,
            "{resource_type} '{name}'"
        );
    }
    for version in range(ApiKey::DeleteRecords) {
        use kafka_protocol::messages::delete_records_request::{
            DeleteRecordsPartition, DeleteRecordsTopic,
        };
        let offset = i64::from(version) + 1;
        let request = DeleteRecordsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(name("sweep-2"))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(offset)])]);
        let response = client.send_version(&request, version).await.unwrap();
        let partition = &response.topics[0].partitions[0];
        assert_eq!(
            (partition.error_code, partition.low_watermark),
            (0, offset),
            "DeleteRecords v{version}"
        );
    }
    for version in range(ApiKey::AlterConfigs) {
        use kafka_protocol::messages::alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        let request =
            AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("sweep-2"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_value(Some(StrBytes::from_static_str("3600000")))])]);
        let response = client.send_version(&request, version).await.unwrap();
        assert_eq!(
            response.responses[0].error_code, 0,
            "AlterConfigs v{version}"
        );
    }
    for version in range(ApiKey::IncrementalAlterConfigs) {
        use kafka_protocol::messages::incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("sweep-2"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("cleanup.policy"))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_static_str("compact")))]),
        ]);
        let response = client.send_version(&request, version).await.unwrap();
        assert_eq!(
            response.responses[0].error_code,
            ErrorCode::InvalidConfig.code(),
            "IncrementalAlterConfigs v{version}"
        );
    }
    for (step, version) in range(ApiKey::CreatePartitions).enumerate() {
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(name("sweep-3"))
                .with_count(3 + step as i32)]);
        let response = client.send_version(&request, version).await.unwrap();
        assert_eq!(
            response.results[0].error_code, 0,
            "CreatePartitions v{version}"
        );
    }
    for version in range(ApiKey::DescribeCluster) {
        let response = client
            .send_version(&DescribeClusterRequest::default(), version)
            .await
            .unwrap();
        assert_eq!(response.brokers.len(), 1, "DescribeCluster v{version}");
    }
    for version in range(ApiKey::InitProducerId) {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        let response = client.send_version(&request, version).await.unwrap();
        assert!(response.producer_id.0 >= 0, "InitProducerId v{version}");
    }
    for version in range(ApiKey::DeleteTopics) {
        let topic = format!("sweep-{}", version + 1);
        let request = if version >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(name(&topic)))
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![name(&topic)])
        };
        let response = client
            .send_version(&request.with_timeout_ms(5000), version)
            .await
            .unwrap();
        assert_eq!(
            response.responses[0].error_code, 0,
            "DeleteTopics v{version}"
        );
    }
}

/// An idempotent producer's retried batch is acknowledged without being written twice; a
/// gap in sequences is refused; an old epoch is fenced.
#[tokio::test]
async fn idempotent_produce_dedupes_retries_and_refuses_gaps() {
    let broker = BrokerProcess::start(2);
    let mut client = Client::connect(&broker.address, "idempotent")
        .await
        .unwrap();
    let (ok, _, err) = broker.cli(&["topic", "create", "payments"], "");
    assert!(ok, "{err}");
    let init = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let producer = client.send(&init).await.unwrap();
    assert_eq!(producer.error_code, 0);
    let (id, epoch) = (producer.producer_id.0, producer.producer_epoch);
    let idempotent = |sequence: i32, values: &[&str]| {
        let mut builder = RecordBatchBuilder::new(1_700_000_000_000).producer(id, epoch, sequence);
        for value in values {
            builder.push(None, Some(value.as_bytes()), 1_700_000_000_000);
        }
        produce_request("payments", 0, builder.finish().into())
    };
    assert_eq!(
        produce_error(&mut client, &idempotent(0, &["a", "b"])).await,
        (0, 0)
    );
    assert_eq!(
        produce_error(&mut client, &idempotent(2, &["c"])).await,
        (0, 2)
    );
    // The retry of sequence 0..1 is answered with its original offset and not stored again.
    assert_eq!(
        produce_error(&mut client, &idempotent(0, &["a", "b"])).await,
        (0, 0)
    );
    let (code, _) = produce_error(&mut client, &idempotent(9, &["gap"])).await;
    assert_eq!(code, ErrorCode::OutOfOrderSequenceNumber.code());
    assert_eq!(
        produce_error(&mut client, &idempotent(3, &["d"])).await,
        (0, 3)
    );
    let response = client
        .send(&fetch_request("payments", 0, 0, 0))
        .await
        .unwrap();
    assert_eq!(
        response.responses[0].partitions[0].high_watermark, 4,
        "a, b, c, d: nothing twice"
    );
    // A bumped epoch fences the old one.
    let bumped = client
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(producer.producer_id)
                .with_producer_epoch(epoch),
        )
        .await
        .unwrap();
    assert_eq!(bumped.producer_epoch, epoch + 1);
    let mut builder = RecordBatchBuilder::new(0).producer(id, epoch + 1, 0);
    builder.push(None, Some(b"new epoch"), 0);
    assert_eq!(
        produce_error(
            &mut client,
            &produce_request("payments", 0, builder.finish().into())
        )
        .await,
        (0, 4)
    );
    let (code, _) = produce_error(&mut client, &idempotent(4, &["stale"])).await;
    assert_eq!(code, ErrorCode::InvalidProducerEpoch.code());
}

#[tokio::test]
async fn metrics_count_requests_records_and_fsyncs() {
    let metrics_address = broker::free_local_address();
    let broker = BrokerProcess::start_with(2, &["--metrics-listen", &metrics_address]);
    let mut client = Client::connect(&broker.address, "metered").await.unwrap();
    let (ok, _, err) = broker.cli(&["topic", "create", "metered"], "");
    assert!(ok, "{err}");
    assert_eq!(
        produce_error(
            &mut client,
            &produce_request("metered", 0, batch(&["a", "b", "c"]))
        )
        .await,
        (0, 0)
    );
    let scrape = || broker::scrape_metrics(&metrics_address);
    // Two garbage frames (a negative size) close their connections and are counted.
    for _ in 0..2 {
        assert!(raw_round_trip(&broker.address, &(-5i32).to_be_bytes())
            .await
            .is_none());
    }
    let text = scrape().await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        text.contains("ringlog_produce_records_total{topic=\"metered\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("ringlog_connections_refused_total 2"),
        "{text}"
    );
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|count| count.parse::<u64>().ok())
    };
    let rounds = value("ringlog_durability_rounds_total");
    assert!(rounds.is_some_and(|rounds| rounds >= 1), "{text}");
    // Every round is timed, and so is the write in it.
    assert_eq!(
        value("ringlog_durability_round_seconds_count"),
        rounds,
        "{text}"
    );
    assert!(
        value("ringlog_log_write_latency_seconds_count").is_some_and(|writes| writes >= 1),
        "{text}"
    );
    assert!(
        text.contains("ringlog_request_latency_seconds_count{api=\"Produce\"} 1"),
        "{text}"
    );
    // The acks=all produce was made durable by an O_DSYNC write: the write and its
    // fdatasync in one operation.
    assert!(
        value("ringlog_log_synced_write_latency_seconds_count").is_some_and(|synced| synced >= 1),
        "{text}"
    );
    assert!(
        value("ringlog_fsync_latency_seconds_count").is_some(),
        "{text}"
    );
    assert!(text.contains("ringlog_connections_open "), "{text}");
    // Partition sizes are published every few seconds.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let text = scrape().await;
        if text.contains("ringlog_partition_log_bytes{topic=\"metered\",partition=\"0\"}") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "partition size never published:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Topic configs that change what is stored: broker-side zstd, LogAppendTime, and
/// max.message.bytes refusing a large batch with MESSAGE_TOO_LARGE.
#[tokio::test]
async fn topic_configs_shape_what_is_stored() {
    use protocol::record_batch::{BatchHeader, Compression};
    let broker = BrokerProcess::start(2);
    let mut client = Client::connect(&broker.address, "configs").await.unwrap();
    for (topic, config) in [
        ("zstd-topic", "compression.type=zstd"),
        ("append-time", "message.timestamp.type=LogAppendTime"),
        ("small", "max.message.bytes=300"),
    ] {
        let (ok, _, err) = broker.cli(&["topic", "create", topic, "-c", config], "");
        assert!(ok, "{err}");
    }
    let values: Vec<String> = (0..40)
        .map(|i| format!("{{\"event\":\"payment\",\"n\":{i}}}"))
        .collect();
    let value_refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let plain = batch(&value_refs);
    assert_eq!(
        produce_error(
            &mut client,
            &produce_request("zstd-topic", 0, plain.clone())
        )
        .await,
        (0, 0)
    );
    let response = client
        .send(&fetch_request("zstd-topic", 0, 0, 0))
        .await
        .unwrap();
    let stored = response.responses[0].partitions[0].records.clone().unwrap();
    let header = BatchHeader::parse(&stored).unwrap();
    assert_eq!(
        header.compression().unwrap(),
        Compression::Zstd,
        "stored compressed"
    );
    assert!(stored.len() < plain.len());
    let records = protocol::codec::decompress_zstd(&stored, 1 << 20).unwrap();
    assert_eq!(
        records,
        plain[protocol::record_batch::HEADER_BYTES..],
        "same records inside"
    );

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let produced = client
        .send(&produce_request("append-time", 0, batch(&["stamped"])))
        .await
        .unwrap();
    let append_time = produced.responses[0].partition_responses[0].log_append_time_ms;
    assert!(
        append_time >= before,
        "log_append_time_ms {append_time} is the broker's clock"
    );
    let response = client
        .send(&fetch_request("append-time", 0, 0, 0))
        .await
        .unwrap();
    let header = BatchHeader::parse(
        response.responses[0].partitions[0]
            .records
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    assert!(header.is_log_append_time());
    assert_eq!(header.max_timestamp, append_time);

    let (code, _) = produce_error(&mut client, &produce_request("small", 0, plain)).await;
    assert_eq!(code, ErrorCode::MessageTooLarge.code());
    assert_eq!(
        produce_error(&mut client, &produce_request("small", 0, batch(&["fits"]))).await,
        (0, 0)
    );
}

/// Topics, their partitions and configs survive a kill -9 and restart, and so does data.
#[test]
fn topics_configs_and_data_survive_kill_9() {
    let mut broker = BrokerProcess::start(2);
    let (ok, _, err) = broker.cli(
        &[
            "topic",
            "create",
            "kept",
            "--partitions",
            "3",
            "-c",
            "retention.ms=123456",
        ],
        "",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = broker.cli(
        &[
            "topic",
            "alter-config",
            "kept",
            "--set",
            "segment.bytes=1048576",
        ],
        "",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = broker.cli(&["topic", "add-partitions", "kept", "--num", "1"], "");
    assert!(ok, "{err}");
    let (ok, _, err) = broker.cli(&["produce", "kept", "-K", ":"], "a:1\nb:2\nc:3\nd:4\n");
    assert!(ok, "{err}");
    broker.kill_and_restart();
    let (ok, out, err) = broker.cli(&["topic", "describe", "kept"], "");
    assert!(ok, "{err}");
    assert!(out.contains("partitions 4"), "{out}");
    assert!(out.contains("retention.ms=123456\n"), "{out}");
    assert!(out.contains("segment.bytes=1048576\n"), "{out}");
    let (ok, out, err) = broker.cli(
        &["consume", "kept", "--from-beginning", "-e", "-f", "%k=%s"],
        "",
    );
    assert!(ok, "{err}");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["a=1", "b=2", "c=3", "d=4"]);
}

/// The portable backend (for machines without io_uring) serves the same way.
#[test]
fn the_portable_backend_serves_produce_and_consume() {
    let broker = BrokerProcess::start_with(2, &["--io-backend", "portable"]);
    let (ok, _, err) = broker.cli(&["topic", "create", "portable", "--partitions", "2"], "");
    assert!(ok, "{err}");
    let (ok, _, err) = broker.cli(
        &["produce", "portable", "-K", ":"],
        "k1:one\nk2:two\nk1:three\n",
    );
    assert!(ok, "{err}");
    let (ok, out, err) = broker.cli(
        &[
            "consume",
            "portable",
            "--from-beginning",
            "-e",
            "-f",
            "%k=%s",
        ],
        "",
    );
    assert!(ok, "{err}");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["k1=one", "k1=three", "k2=two"]);
    let (ok, _, err) = broker.cli(&["topic", "create", "x", "--partitions", "0"], "");
    assert!(!ok && err.contains("InvalidPartitions"), "{err}");
}

/// Every version of the group APIs is answered: a member joins (getting its member id
/// first from v4), syncs, heartbeats, commits, fetches its offsets and leaves.
#[tokio::test]
async fn every_version_of_the_group_apis_is_answered() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;

    let broker = BrokerProcess::start_with(
        2,
        &[
            "--group-min-session-timeout-ms",
            "100",
            "--group-initial-rebalance-delay-ms",
            "0",
        ],
    );
    let (ok, _, err) = broker.cli(&["topic", "create", "grouped"], "");
    assert!(ok, "{err}");
    let mut client = Client::connect(&broker.address, "group-sweep")
        .await
        .unwrap();
    let max = |key: ApiKey| protocol::versions::supported(key).unwrap().max_version;
    let min = |key: ApiKey| protocol::versions::supported(key).unwrap().min_version;
    for step in 0..=max(ApiKey::JoinGroup) {
        let group = GroupId(StrBytes::from_string(format!("group-{step}")));
        let version = |key: ApiKey| step.clamp(min(key), max(key));
        let find = if version(ApiKey::FindCoordinator) >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![group.0.clone()])
        } else {
            FindCoordinatorRequest::default().with_key(group.0.clone())
        };
        let coordinator = client
            .send_version(&find, version(ApiKey::FindCoordinator))
            .await
            .unwrap();
        if version(ApiKey::FindCoordinator) >= 4 {
            assert_eq!(coordinator.coordinators[0].error_code, 0);
        } else {
            assert_eq!(coordinator.error_code, 0);
        }
        let join = JoinGroupRequest::default()
            .with_group_id(group.clone())
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"meta"))]);
        let mut joined = client
            .send_version(&join, version(ApiKey::JoinGroup))
            .await
            .unwrap();
        if joined.error_code == ErrorCode::MemberIdRequired.code() {
            joined = client
                .send_version(
                    &join.clone().with_member_id(joined.member_id.clone()),
                    version(ApiKey::JoinGroup),
                )
                .await
                .unwrap();
        }
        assert_eq!(
            joined.error_code,
            0,
            "JoinGroup v{}",
            version(ApiKey::JoinGroup)
        );
        assert_eq!(joined.leader, joined.member_id);
        let member = joined.member_id.clone();
        let sync = SyncGroupRequest::default()
            .with_group_id(group.clone())
            .with_generation_id(joined.generation_id)
            .with_member_id(member.clone())
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(Some(StrBytes::from_static_str("range")))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(member.clone())
                .with_assignment(Bytes::from_static(b"plan"))]);
        let sync_version = version(ApiKey::SyncGroup);
        let sync = if sync_version >= 5 {
            sync
        } else {
            sync.with_protocol_type(None).with_protocol_name(None)
        };
        let synced = client.send_version(&sync, sync_version).await.unwrap();
        assert_eq!(
            (synced.error_code, synced.assignment.as_ref()),
            (0, &b"plan"[..]),
            "SyncGroup v{sync_version}"
        );
        let beat = HeartbeatRequest::default()
            .with_group_id(group.clone())
            .with_generation_id(joined.generation_id)
            .with_member_id(member.clone());
        assert_eq!(
            client
                .send_version(&beat, version(ApiKey::Heartbeat))
                .await
                .unwrap()
                .error_code,
            0
        );
        let commit = OffsetCommitRequest::default()
            .with_group_id(group.clone())
            .with_generation_id_or_member_epoch(joined.generation_id)
            .with_member_id(member.clone())
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(name("grouped"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(42 + i64::from(step))])]);
        let committed = client
            .send_version(&commit, version(ApiKey::OffsetCommit))
            .await
            .unwrap();
        assert_eq!(
            committed.topics[0].partitions[0].error_code,
            0,
            "OffsetCommit v{}",
            version(ApiKey::OffsetCommit)
        );
        let fetch_version = version(ApiKey::OffsetFetch);
        let fetched = if fetch_version >= 8 {
            let request =
                OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                    .with_group_id(group.clone())
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(name("grouped"))
                        .with_partition_indexes(vec![0])]))]);
            client
                .send_version(&request, fetch_version)
                .await
                .unwrap()
                .groups[0]
                .topics[0]
                .partitions[0]
                .committed_offset
        } else {
            let request = OffsetFetchRequest::default()
                .with_group_id(group.clone())
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(name("grouped"))
                    .with_partition_indexes(vec![0])]));
            client
                .send_version(&request, fetch_version)
                .await
                .unwrap()
                .topics[0]
                .partitions[0]
                .committed_offset
        };
        assert_eq!(
            fetched,
            42 + i64::from(step),
            "OffsetFetch v{fetch_version}"
        );
        let leave_version = version(ApiKey::LeaveGroup);
        let leave = if leave_version >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(group.clone())
                .with_members(vec![
                    MemberIdentity::default().with_member_id(member.clone())
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(group.clone())
                .with_member_id(member.clone())
        };
        let left = client.send_version(&leave, leave_version).await.unwrap();
        assert_eq!(left.error_code, 0, "LeaveGroup v{leave_version}");
        // A heartbeat after leaving is refused.
        let gone = client
            .send_version(&beat, version(ApiKey::Heartbeat))
            .await
            .unwrap();
        assert_eq!(gone.error_code, ErrorCode::UnknownMemberId.code());
    }
    // The admin APIs, every version: the groups above are Empty with committed offsets.
    for version in 0..=max(ApiKey::ListGroups) {
        let listed = client
            .send_version(&ListGroupsRequest::default(), version)
            .await
            .unwrap();
        assert_eq!(listed.error_code, 0, "ListGroups v{version}");
        assert!(
            listed
                .groups
                .iter()
                .any(|g| g.group_id.0.as_str() == "group-0"),
            "ListGroups v{version}"
        );
    }
    for version in 0..=max(ApiKey::DescribeGroups) {
        let request = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_static_str("group-1"))]);
        let described = client.send_version(&request, version).await.unwrap();
        assert_eq!(
            (
                described.groups[0].error_code,
                described.groups[0].group_state.as_str()
            ),
            (0, "Empty"),
            "DescribeGroups v{version}"
        );
    }
    let offset_delete = OffsetDeleteRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("group-2")))
        .with_topics(vec![
            kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(name("grouped"))
                .with_partitions(vec![
                    kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(0),
                ]),
        ]);
    let deleted = client.send_version(&offset_delete, 0).await.unwrap();
    assert_eq!(
        deleted.topics[0].partitions[0].error_code, 0,
        "OffsetDelete v0"
    );
    for version in 0..=max(ApiKey::DeleteGroups) {
        let group = format!("group-{}", 4 + version);
        let request = DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(StrBytes::from_string(group))]);
        let deleted = client.send_version(&request, version).await.unwrap();
        assert_eq!(deleted.results[0].error_code, 0, "DeleteGroups v{version}");
    }
    // Committed offsets survive a restart.
    let mut broker = broker;
    broker.kill_and_restart();
    let mut client = Client::connect(&broker.address, "after-restart")
        .await
        .unwrap();
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("group-3")))
        .with_topics(Some(vec![
            kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(name("grouped"))
                .with_partition_indexes(vec![0]),
        ]));
    let fetched = client.send_version(&request, 7).await.unwrap();
    assert_eq!(fetched.topics[0].partitions[0].committed_offset, 45);
}

/// Fetch's `max_bytes` bounds the whole response at batch boundaries: partitions keep the
/// whole batches that fit, and only the first batch of the first partition with data may
/// exceed the limit (a consumer with fetch.max.bytes below a partition's backlog must still
/// get responses it accepts, and progress).
#[tokio::test]
async fn fetch_max_bytes_bounds_the_response_and_only_the_first_batch_may_exceed_it() {
    let broker = BrokerProcess::start(1);
    let (ok, _, err) = broker.cli(&["topic", "create", "big", "--partitions", "2"], "");
    assert!(ok, "{err}");
    let mut client = Client::connect(&broker.address, "fetch-limits")
        .await
        .unwrap();
    let value = "v".repeat(1000);
    let values: Vec<&str> = (0..50).map(|_| value.as_str()).collect();
    for (partition, batches) in [(0, 20), (1, 5)] {
        for _ in 0..batches {
            let (code, _) = produce_error(
                &mut client,
                &produce_request("big", partition, batch(&values)),
            )
            .await;
            assert_eq!(code, 0);
        }
    }
    let fetch = |max_bytes: i32| {
        FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("big"))
                .with_partitions(
                    (0..2)
                        .map(|partition| {
                            FetchPartition::default()
                                .with_partition(partition)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(10 << 20)
                        })
                        .collect(),
                )])
    };
    // Whole batches, contiguous from offset 0, counted to the end of each partition's bytes.
    let batches_of = |records: &Bytes| {
        let mut at = 0;
        let mut next_offset = 0;
        let mut count = 0;
        while at < records.len() {
            let header = protocol::record_batch::BatchHeader::parse(&records[at..]).unwrap();
            assert_eq!(header.base_offset, next_offset, "batches are contiguous");
            next_offset = header.last_offset() + 1;
            at += header.total_bytes();
            count += 1;
        }
        assert_eq!(at, records.len(), "only whole batches");
        count
    };
    let response = client.send(&fetch(250_000)).await.unwrap();
    let partitions = &response.responses[0].partitions;
    let first = partitions[0].records.clone().unwrap_or_default();
    let second = partitions[1].records.clone().unwrap_or_default();
    assert!(!first.is_empty());
    assert!(
        first.len() + second.len() <= 250_000,
        "{} + {} bytes",
        first.len(),
        second.len()
    );
    assert!(
        batches_of(&first) >= 4,
        "the first partition fills the budget"
    );
    batches_of(&second);
    // A limit below one batch: the first batch whole, nothing else.
    let response = client.send(&fetch(1000)).await.unwrap();
    let partitions = &response.responses[0].partitions;
    let first = partitions[0].records.clone().unwrap_or_default();
    assert_eq!(batches_of(&first), 1);
    assert!(first.len() > 1000);
    assert!(partitions[1].records.as_ref().is_none_or(Bytes::is_empty));
}

/// A fetch answer of thousands of small batches goes out as thousands of buffers (one per
/// batch held in the partition's tail cache), more than one vectored write takes: every
/// record still arrives once, in order, with its value; on both I/O backends.
#[tokio::test]
async fn a_fetch_of_thousands_of_small_batches_comes_back_whole_and_in_order() {
    fetch_thousands_of_batches(BrokerProcess::start(1)).await;
    fetch_thousands_of_batches(BrokerProcess::start_with(1, &["--io-backend", "portable"])).await;
}

async fn fetch_thousands_of_batches(broker: BrokerProcess) {
    const BATCHES: usize = 2_500;
    let (ok, _, err) = broker.cli(&["topic", "create", "many", "--partitions", "1"], "");
    assert!(ok, "{err}");
    let mut client = Client::connect(&broker.address, "many-batches")
        .await
        .unwrap();
    for i in 0..BATCHES {
        let value = format!("value-{i}");
        // acks=1 is answered once written; the last waits for its fdatasync, so the high
        // watermark covers every batch when the fetch comes.
        let acks = if i + 1 == BATCHES { -1 } else { 1 };
        let request = produce_request("many", 0, batch(&[value.as_str()])).with_acks(acks);
        assert_eq!(produce_error(&mut client, &request).await, (0, i as i64));
    }
    let response = client.send(&fetch_request("many", 0, 0, 0)).await.unwrap();
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    let records = partition.records.clone().unwrap_or_default();
    let mut next = 0usize;
    check_records_from(&records, &mut next, |i| format!("value-{i}"));
    assert_eq!(next, BATCHES, "every record, once, in order");
}

/// Checks that the fetched `records` hold the records from offset `next` on, in order, the
/// one at offset i with value `value(i)`; moves `next` past them.
fn check_records_from(records: &[u8], next: &mut usize, value: impl Fn(usize) -> String) {
    let mut at = 0;
    while at < records.len() {
        let header = protocol::record_batch::BatchHeader::parse(&records[at..]).unwrap();
        let end = at + header.total_bytes();
        for record in protocol::records::Records::new(&records[at..end]).unwrap() {
            let record = record.unwrap();
            assert_eq!(record.offset, *next as i64);
            assert_eq!(record.value, Some(value(*next).as_bytes()));
            *next += 1;
        }
        at = end;
    }
}

/// A consumer a few MiB behind the log end reads from memory while the shard's tail-cache
/// budget covers its partition's share (8 MiB over two partitions: 4 MiB each), and from
/// the segment files when the share is smaller (a 1 MiB budget: each partition keeps its
/// 1 MiB floor). Either way every record comes back once, in order; the broker's read
/// counters say where the reads went, and its gauge what the caches hold.
#[tokio::test]
async fn a_lagging_consumer_reads_from_the_tail_cache_its_shards_budget_holds() {
    let read_from = |text: &str, counter: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(counter)?.strip_prefix(' '))
            .and_then(|count| count.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {counter} in:\n{text}"))
    };
    for (budget, from_memory) in [("8388608", true), ("1048576", false)] {
        let metrics_address = broker::free_local_address();
        let broker = BrokerProcess::start_with(
            1,
            &[
                "--metrics-listen",
                &metrics_address,
                "--tail-cache-bytes",
                budget,
            ],
        );
        let (ok, _, err) = broker.cli(&["topic", "create", "lagging", "--partitions", "2"], "");
        assert!(ok, "{err}");
        let mut client = Client::connect(&broker.address, "lagging").await.unwrap();
        // 3 MiB in partition 0: 96 batches of 64 records of 500 bytes.
        let value = |i: usize| format!("{i:08}-{}", "v".repeat(491));
        let per_batch = 64;
        for b in 0..96 {
            let values: Vec<String> = (b * per_batch..(b + 1) * per_batch).map(value).collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let request = produce_request("lagging", 0, batch(&refs));
            assert_eq!(
                produce_error(&mut client, &request).await,
                (0, (b * per_batch) as i64)
            );
        }
        let before = broker::scrape_metrics(&metrics_address).await;
        let mut next = 0usize;
        while next < 96 * per_batch {
            let response = client
                .send(&fetch_request("lagging", 0, next as i64, 0))
                .await
                .unwrap();
            let partition = &response.responses[0].partitions[0];
            assert_eq!(partition.error_code, 0);
            let records = partition.records.clone().unwrap_or_default();
            assert!(!records.is_empty(), "nothing fetched at offset {next}");
            check_records_from(&records, &mut next, value);
        }
        let after = broker::scrape_metrics(&metrics_address).await;
        let counted = |counter: &str| read_from(&after, counter) - read_from(&before, counter);
        let (cache, disk) = (
            counted("ringlog_log_cache_reads_total"),
            counted("ringlog_log_disk_reads_total"),
        );
        // What the caches hold stays within the budget (or the 1 MiB floor per partition).
        let held = read_from(&after, "ringlog_tail_cache_bytes");
        if from_memory {
            assert!(
                (3_000_000..=8 << 20).contains(&held),
                "budget {budget}: the caches hold {held} bytes"
            );
        } else {
            assert!(
                (512 << 10..=2 << 20).contains(&held),
                "budget {budget}: the caches hold {held} bytes"
            );
        }
        if from_memory {
            assert!(
                cache >= 3 && disk == 0,
                "budget {budget}: {cache} cache reads, {disk} disk reads"
            );
        } else {
            assert!(
                disk >= 1,
                "budget {budget}: {cache} cache reads, {disk} disk reads"
            );
            assert!(counted("ringlog_log_disk_read_bytes_total") >= 1 << 20);
        }
    }
}

/// Connections are spread over the shards by how many each serves, whichever shard the
/// kernel's SO_REUSEPORT hash gave them to, and a connection handed to another shard is
/// served there like any other: on both I/O backends, 24 connections opened one after
/// another never leave one shard serving two more than the other, every one of them
/// produces in order, and the records read back whole.
#[tokio::test]
async fn connections_are_spread_over_the_shards_and_served_where_placed() {
    for backend in ["uring", "portable"] {
        spread_connections(backend).await;
    }
}

async fn spread_connections(backend: &str) {
    const CONNECTIONS: usize = 24;
    let metrics_address = broker::free_local_address();
    let broker = BrokerProcess::start_with(
        2,
        &[
            "--metrics-listen",
            &metrics_address,
            "--io-backend",
            backend,
        ],
    );
    let (ok, _, err) = broker.cli(&["topic", "create", "spread", "--partitions", "2"], "");
    assert!(ok, "{err}");
    // Connections each shard serves, once `open` of them are open.
    let serving = |open: usize| {
        let metrics_address = metrics_address.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let text = broker::scrape_metrics(&metrics_address).await;
                let counts: Vec<usize> = (0..2)
                    .filter_map(|shard| {
                        let prefix = format!("ringlog_shard_connections{{shard=\"{shard}\"}} ");
                        text.lines()
                            .find_map(|line| line.strip_prefix(prefix.as_str()))
                            .and_then(|count| count.parse().ok())
                    })
                    .collect();
                if counts.len() == 2 && counts.iter().sum::<usize>() == open {
                    return counts;
                }
                assert!(
                    Instant::now() < deadline,
                    "{backend}: not {open} connections counted:\n{text}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // The CLI's connection has closed.
    serving(0).await;
    let mut clients = Vec::new();
    for n in 0..CONNECTIONS {
        let mut client = Client::connect(&broker.address, "spread").await.unwrap();
        let partition = (n % 2) as i32;
        let value = format!("from connection {n}");
        assert_eq!(
            produce_error(
                &mut client,
                &produce_request("spread", partition, batch(&[value.as_str()]))
            )
            .await,
            (0, (n / 2) as i64),
            "{backend}: connection {n}"
        );
        let counts = serving(n + 1).await;
        assert!(
            counts[0].abs_diff(counts[1]) <= 1,
            "{backend}: {counts:?} after {} connections",
            n + 1
        );
        clients.push(client);
    }
    for (partition, client) in clients.iter_mut().take(2).enumerate() {
        let response = client
            .send(&fetch_request("spread", partition as i32, 0, 0))
            .await
            .unwrap();
        let fetched = &response.responses[0].partitions[0];
        assert_eq!(fetched.error_code, 0);
        let records = fetched.records.clone().unwrap_or_default();
        let mut next = 0usize;
        check_records_from(&records, &mut next, |i| {
            format!("from connection {}", 2 * i + partition)
        });
        assert_eq!(next, CONNECTIONS / 2, "{backend}: partition {partition}");
    }
    drop(clients);
    serving(0).await;
}
