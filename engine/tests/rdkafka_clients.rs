//! librdkafka (through the rdkafka crate) against a real ringlog process: admin, keyed
//! produce, consume from the beginning, compression, offsets for times, a broker killed
//! and restarted mid-stream. Every test checks what came back, message by message.

mod broker;

use std::collections::BTreeMap;
use std::time::Duration;

use broker::BrokerProcess;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(20);

fn admin(broker: &BrokerProcess) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .create()
        .expect("admin client")
}

fn producer(broker: &BrokerProcess, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &broker.address)
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config.create().expect("producer")
}

/// A consumer assigned to every partition from the beginning (no group).
fn consumer_from_beginning(broker: &BrokerProcess, topic: &str, partitions: i32) -> BaseConsumer {
    broker::consumer_from_beginning(&broker.address, topic, partitions)
}

/// (partition, offset, key, value) of `count` messages.
fn consume(consumer: &BaseConsumer, count: usize) -> Vec<(i32, i64, Option<String>, String)> {
    let mut received = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while received.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {count} messages arrived",
            received.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consumed message");
            received.push((
                message.partition(),
                message.offset(),
                message
                    .key()
                    .map(|key| String::from_utf8_lossy(key).into_owned()),
                String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    received
}

async fn create_topic(
    broker: &BrokerProcess,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<(), RDKafkaErrorCode> {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = admin(broker)
        .create_topics(
            &[topic],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .expect("create_topics request");
    match &results[0] {
        Ok(_) => Ok(()),
        Err((_, code)) => Err(*code),
    }
}

/// Every topic's name and partition count, by name, from Metadata.
fn topic_partition_counts(broker: &BrokerProcess) -> Vec<(String, usize)> {
    let metadata = admin(broker)
        .inner()
        .fetch_metadata(None, TIMEOUT)
        .expect("metadata");
    let mut topics: Vec<(String, usize)> = metadata
        .topics()
        .iter()
        .map(|topic| (topic.name().to_string(), topic.partitions().len()))
        .collect();
    topics.sort();
    topics
}

#[tokio::test]
async fn keyed_messages_keep_their_partition_and_order_and_read_back_from_the_beginning() {
    let broker = BrokerProcess::start(2);
    create_topic(&broker, "payment-done", 3, &[])
        .await
        .expect("topic created");
    let producer = producer(&broker, &[]);
    let mut sent: BTreeMap<i32, Vec<(String, String)>> = BTreeMap::new();
    for i in 0..300 {
        let key = format!("customer-{}", i % 10);
        let value = format!("payment {i}");
        let delivery = producer
            .send(
                FutureRecord::to("payment-done").key(&key).payload(&value),
                TIMEOUT,
            )
            .await
            .expect("delivered");
        let (partition, offset) = (delivery.partition, delivery.offset);
        assert_eq!(
            partition,
            protocol::partitioner::partition_for_key(key.as_bytes(), 3),
            "same key, same (Java murmur2) partition"
        );
        let log = sent.entry(partition).or_default();
        assert_eq!(
            offset,
            log.len() as i64,
            "offsets are dense within a partition"
        );
        log.push((key, value));
    }
    let consumer = consumer_from_beginning(&broker, "payment-done", 3);
    let received = consume(&consumer, 300);
    let mut by_partition: BTreeMap<i32, Vec<(String, String)>> = BTreeMap::new();
    for (partition, offset, key, value) in received {
        let log = by_partition.entry(partition).or_default();
        assert_eq!(
            offset,
            log.len() as i64,
            "partition {partition} arrives in offset order"
        );
        log.push((key.expect("keyed"), value));
    }
    assert_eq!(
        by_partition, sent,
        "every message back exactly once, in order"
    );
}

#[tokio::test]
async fn zstd_and_gzip_batches_round_trip() {
    let broker = BrokerProcess::start(2);
    for codec in ["zstd", "gzip", "none"] {
        let topic = format!("compressed-{codec}");
        create_topic(&broker, &topic, 1, &[])
            .await
            .expect("topic created");
        let producer = producer(&broker, &[("compression.type", codec), ("linger.ms", "50")]);
        let values: Vec<String> = (0..200)
            .map(|i| format!("{{\"event\":\"payment-done\",\"amount\":{i},\"currency\":\"EUR\"}}"))
            .collect();
        let sends = values
            .iter()
            .map(|value| producer.send(FutureRecord::<(), _>::to(&topic).payload(value), TIMEOUT));
        for delivered in futures_util::future::join_all(sends).await {
            delivered.expect("delivered");
        }
        let consumer = consumer_from_beginning(&broker, &topic, 1);
        let received: Vec<String> = consume(&consumer, 200)
            .into_iter()
            .map(|(_, _, _, value)| value)
            .collect();
        assert_eq!(received, values, "{codec}");
    }
}

#[tokio::test]
async fn headers_and_timestamps_round_trip_and_offsets_for_times_finds_them() {
    let broker = BrokerProcess::start(1);
    create_topic(&broker, "timed", 1, &[])
        .await
        .expect("topic created");
    let producer = producer(&broker, &[]);
    let t0 = 1_700_000_000_000i64;
    for i in 0..50i64 {
        let headers = OwnedHeaders::new().insert(Header {
            key: "trace",
            value: Some(format!("t{i}").as_bytes()),
        });
        producer
            .send(
                FutureRecord::<(), _>::to("timed")
                    .payload(&format!("at {i}"))
                    .timestamp(t0 + i * 1000)
                    .headers(headers),
                TIMEOUT,
            )
            .await
            .expect("delivered");
    }
    let consumer = consumer_from_beginning(&broker, "timed", 1);
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut seen = 0i64;
    while seen < 50 {
        assert!(std::time::Instant::now() < deadline);
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.expect("message");
        assert_eq!(message.offset(), seen);
        assert_eq!(message.timestamp().to_millis(), Some(t0 + seen * 1000));
        let header = message.headers().expect("headers").get(0);
        assert_eq!(header.key, "trace");
        assert_eq!(header.value, Some(format!("t{seen}").as_bytes()));
        seen += 1;
    }
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset("timed", 0, Offset::Offset(t0 + 20_500))
        .unwrap();
    let found = consumer
        .offsets_for_times(query, TIMEOUT)
        .expect("offsets for times");
    assert_eq!(
        found.find_partition("timed", 0).unwrap().offset(),
        Offset::Offset(21)
    );
    let (low, high) = consumer
        .fetch_watermarks("timed", 0, TIMEOUT)
        .expect("watermarks");
    assert_eq!((low, high), (0, 50));
}

#[tokio::test]
async fn acknowledged_messages_survive_a_kill_9_mid_stream() {
    let mut broker = BrokerProcess::start(2);
    create_topic(&broker, "durable", 2, &[])
        .await
        .expect("topic created");
    let producer = producer(&broker, &[("retries", "100"), ("retry.backoff.ms", "100")]);
    let mut delivered = Vec::new();
    for i in 0..100 {
        let key = format!("k{}", i % 4);
        let result = producer
            .send(
                FutureRecord::to("durable")
                    .key(&key)
                    .payload(&format!("before {i}")),
                TIMEOUT,
            )
            .await;
        let delivery = result.expect("delivered");
        delivered.push((delivery.partition, delivery.offset));
    }
    broker.kill_and_restart();
    for i in 0..100 {
        let key = format!("k{}", i % 4);
        let result = producer
            .send(
                FutureRecord::to("durable")
                    .key(&key)
                    .payload(&format!("after {i}")),
                TIMEOUT,
            )
            .await;
        let delivery = result.expect("delivered after restart");
        delivered.push((delivery.partition, delivery.offset));
    }
    let consumer = consumer_from_beginning(&broker, "durable", 2);
    let received = consume(&consumer, 200);
    let mut got: Vec<(i32, i64)> = received.iter().map(|(p, o, _, _)| (*p, *o)).collect();
    got.sort_unstable();
    delivered.sort_unstable();
    assert_eq!(
        got, delivered,
        "every acknowledged message is there, at the offset it was acknowledged with"
    );
    let befores = received
        .iter()
        .filter(|(_, _, _, value)| value.starts_with("before"))
        .count();
    assert_eq!(befores, 100);
}

#[tokio::test]
async fn auto_creation_and_config_refusals() {
    let broker = BrokerProcess::start(2);
    // Producing to an unknown topic creates it (auto.create.topics.enable, num.partitions=1).
    let producer = producer(&broker, &[]);
    let delivery = producer
        .send(
            FutureRecord::<(), _>::to("created-on-demand").payload("first"),
            TIMEOUT,
        )
        .await
        .expect("delivered");
    assert_eq!((delivery.partition, delivery.offset), (0, 0));
    // An existing topic cannot be created again; an unimplemented config is refused.
    assert_eq!(
        create_topic(&broker, "created-on-demand", 1, &[]).await,
        Err(RDKafkaErrorCode::TopicAlreadyExists)
    );
    assert_eq!(
        create_topic(&broker, "compacted", 1, &[("cleanup.policy", "compact")]).await,
        Err(RDKafkaErrorCode::InvalidConfig)
    );
    assert_eq!(
        create_topic(&broker, "bad name!", 1, &[]).await,
        Err(RDKafkaErrorCode::InvalidTopic)
    );
    assert_eq!(
        create_topic(
            &broker,
            "with-retention",
            2,
            &[("retention.ms", "60000"), ("segment.bytes", "1048576")]
        )
        .await,
        Ok(())
    );
    let topics = topic_partition_counts(&broker);
    assert_eq!(
        topics,
        vec![
            ("created-on-demand".to_string(), 1),
            ("with-retention".to_string(), 2)
        ]
    );
}

/// `num_partitions` in the `--config` file (Kafka's num.partitions) sizes auto-created
/// topics and CreateTopics that leave the count to the broker (-1).
#[tokio::test]
async fn num_partitions_from_the_config_file_sizes_topics_left_to_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ringlog.toml");
    std::fs::write(&config, "num_partitions = 4\n").unwrap();
    let broker = BrokerProcess::start_with(2, &["--config", config.to_str().unwrap()]);
    let producer = producer(&broker, &[]);
    producer
        .send(FutureRecord::<(), _>::to("auto").payload("first"), TIMEOUT)
        .await
        .expect("delivered");
    assert_eq!(create_topic(&broker, "defaulted", -1, &[]).await, Ok(()));
    let topics = topic_partition_counts(&broker);
    assert_eq!(
        topics,
        vec![("auto".to_string(), 4), ("defaulted".to_string(), 4)]
    );
}

#[tokio::test]
async fn idempotent_producer_delivers_each_message_once_in_order() {
    let broker = BrokerProcess::start(2);
    create_topic(&broker, "exactly-once-ish", 1, &[])
        .await
        .expect("topic created");
    let producer = producer(
        &broker,
        &[("enable.idempotence", "true"), ("linger.ms", "2")],
    );
    let sends = (0..200).map(|i| {
        let value = format!("event {i}");
        let producer = &producer;
        async move {
            producer
                .send(
                    FutureRecord::<(), _>::to("exactly-once-ish").payload(&value),
                    TIMEOUT,
                )
                .await
        }
    });
    for (i, delivered) in futures_util::future::join_all(sends)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            delivered.expect("delivered").offset,
            i as i64,
            "in order, no gaps, no duplicates"
        );
    }
    let consumer = consumer_from_beginning(&broker, "exactly-once-ish", 1);
    let values: Vec<String> = consume(&consumer, 200)
        .into_iter()
        .map(|(_, _, _, value)| value)
        .collect();
    assert_eq!(
        values,
        (0..200).map(|i| format!("event {i}")).collect::<Vec<_>>()
    );
}

/// A topic with compression.type set stores every batch with that codec, whatever codec
/// the producer used (recompressed as Kafka does; `uncompressed` decompresses); consumers
/// read the same messages back, in order.
#[tokio::test]
async fn topic_compression_stores_batches_of_every_codec_with_the_topic_codec() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use protocol::record_batch::{BatchHeader, Compression};

    let broker = BrokerProcess::start(2);
    let mut client = protocol::client::Client::connect(&broker.address, "check")
        .await
        .unwrap();
    for (topic_codec, stored_as) in [
        ("uncompressed", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let topic = format!("stored-{topic_codec}");
        create_topic(&broker, &topic, 1, &[("compression.type", topic_codec)])
            .await
            .expect("topic created");
        let mut expected = Vec::new();
        for codec in ["none", "gzip", "lz4", "snappy", "zstd"] {
            let producer = producer(&broker, &[("compression.type", codec), ("linger.ms", "20")]);
            let values: Vec<String> = (0..50)
                .map(|i| format!("{codec} payment {i} {}", "x".repeat(60)))
                .collect();
            let sends = values.iter().map(|value| {
                producer.send(FutureRecord::<(), _>::to(&topic).payload(value), TIMEOUT)
            });
            for delivered in futures_util::future::join_all(sends).await {
                delivered.expect("delivered");
            }
            expected.extend(values);
        }
        let consumer = consumer_from_beginning(&broker, &topic, 1);
        let received: Vec<String> = consume(&consumer, expected.len())
            .into_iter()
            .map(|(_, _, _, value)| value)
            .collect();
        assert_eq!(received, expected, "{topic}");
        // Every stored batch has the topic's codec.
        let fetch = FetchRequest::default()
            .with_max_bytes(16 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_partition_max_bytes(16 << 20)])]);
        let response = client.send(&fetch).await.unwrap();
        let records = response.responses[0].partitions[0].records.clone().unwrap();
        let mut at = 0;
        let mut batches = 0;
        while at < records.len() {
            let header = BatchHeader::parse(&records[at..]).unwrap();
            assert_eq!(header.compression().unwrap(), stored_as, "{topic}");
            at += header.total_bytes();
            batches += 1;
        }
        assert!(batches >= 5, "{topic}: {batches} batches");
    }
}

/// CreateTopics with a manual replica assignment: one naming this broker places a
/// partition per entry; another broker id, a repeated replica or a gap in the partitions is
/// INVALID_REPLICA_ASSIGNMENT, and nothing is created.
#[tokio::test]
async fn manual_replica_assignments_name_this_broker_or_are_refused() {
    let broker = BrokerProcess::start(2);
    let admin = admin(&broker);
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let placed = NewTopic::new("placed", 3, TopicReplication::Variable(&[&[0], &[0], &[0]]));
    let results = admin.create_topics(&[placed], &options).await.unwrap();
    assert!(results[0].is_ok(), "{:?}", results[0]);
    let metadata = admin
        .inner()
        .fetch_metadata(Some("placed"), TIMEOUT)
        .unwrap();
    let partitions = metadata.topics()[0].partitions();
    assert_eq!(partitions.len(), 3);
    for partition in partitions {
        assert_eq!(partition.leader(), 0);
        assert_eq!(partition.replicas(), &[0]);
    }
    let producer = producer(&broker, &[]);
    producer
        .send(
            FutureRecord::<(), _>::to("placed")
                .partition(2)
                .payload("on 2"),
            TIMEOUT,
        )
        .await
        .expect("delivered");

    for (name, assignment) in [
        ("elsewhere", &[&[7][..]][..]),
        ("twice", &[&[0, 0][..]][..]),
        ("uneven", &[&[0][..], &[0, 0][..]][..]),
    ] {
        let topic = NewTopic::new(
            name,
            assignment.len() as i32,
            TopicReplication::Variable(assignment),
        );
        let results = admin.create_topics(&[topic], &options).await.unwrap();
        match &results[0] {
            Err((_, code)) => {
                assert_eq!(*code, RDKafkaErrorCode::InvalidReplicaAssignment, "{name}")
            }
            Ok(_) => panic!("{name}: {assignment:?} was accepted"),
        }
    }
    let metadata = admin.inner().fetch_metadata(None, TIMEOUT).unwrap();
    let names: Vec<&str> = metadata.topics().iter().map(|topic| topic.name()).collect();
    assert_eq!(names, vec!["placed"]);
}

/// DeleteRecords through librdkafka's admin API: the log start moves to the offset asked
/// (END: the high watermark), consumers from the beginning start there, whole segments below
/// it are deleted, an offset past the high watermark is OFFSET_OUT_OF_RANGE, and the new
/// start survives kill -9.
#[tokio::test]
async fn delete_records_moves_the_log_start_and_survives_a_restart() {
    let mut broker = BrokerProcess::start(2);
    create_topic(&broker, "trimmed", 2, &[("segment.bytes", "16384")])
        .await
        .expect("topic created");
    let producer = producer(&broker, &[("linger.ms", "0")]);
    for (partition, count) in [(0, 200), (1, 50)] {
        for i in 0..count {
            let value = format!("p{partition} record {i} {}", "x".repeat(100));
            producer
                .send(
                    FutureRecord::<(), _>::to("trimmed")
                        .partition(partition)
                        .payload(&value),
                    TIMEOUT,
                )
                .await
                .expect("delivered");
        }
    }
    let segment_files = |broker: &BrokerProcess| {
        std::fs::read_dir(broker.data_dir().join("trimmed-0"))
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.ends_with(".log") && !name.starts_with("recycled")
            })
            .count()
    };
    let segments_before = segment_files(&broker);
    assert!(segments_before >= 3, "{segments_before} segments");

    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("trimmed", 0, Offset::Offset(150))
        .unwrap();
    offsets
        .add_partition_offset("trimmed", 1, Offset::End)
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let deleted = admin(&broker)
        .delete_records(&offsets, &options)
        .await
        .expect("delete_records");
    let low: Vec<(i32, Offset)> = deleted
        .elements()
        .iter()
        .map(|element| {
            element.error().expect("partition deleted");
            (element.partition(), element.offset())
        })
        .collect();
    assert_eq!(low, vec![(0, Offset::Offset(150)), (1, Offset::Offset(50))]);
    assert!(
        segment_files(&broker) < segments_before,
        "whole segments below 150 deleted"
    );

    let mut too_far = TopicPartitionList::new();
    too_far
        .add_partition_offset("trimmed", 0, Offset::Offset(201))
        .unwrap();
    let refused = admin(&broker)
        .delete_records(&too_far, &options)
        .await
        .expect("delete_records");
    // (librdkafka reports a partition's error under its OffsetFetch variant.)
    assert_eq!(
        refused.elements()[0].error(),
        Err(rdkafka::error::KafkaError::OffsetFetch(
            RDKafkaErrorCode::OffsetOutOfRange
        ))
    );

    for round in ["before", "after kill -9"] {
        let consumer = consumer_from_beginning(&broker, "trimmed", 2);
        assert_eq!(
            consumer.fetch_watermarks("trimmed", 0, TIMEOUT).unwrap(),
            (150, 200),
            "{round}"
        );
        assert_eq!(
            consumer.fetch_watermarks("trimmed", 1, TIMEOUT).unwrap(),
            (50, 50),
            "{round}"
        );
        let received = consume(&consumer, 50);
        let expected: Vec<(i32, i64)> = (150..200).map(|offset| (0, offset)).collect();
        let got: Vec<(i32, i64)> = received
            .iter()
            .map(|(partition, offset, _, _)| (*partition, *offset))
            .collect();
        assert_eq!(got, expected, "{round}");
        assert!(received[0].3.starts_with("p0 record 150 "), "{round}");
        drop(consumer);
        if round == "before" {
            broker.kill_and_restart();
        }
    }
}

/// A broker's configs as librdkafka describes them: name -> (value, source, read-only).
async fn describe_broker(broker: &BrokerProcess) -> BTreeMap<String, (String, String, bool)> {
    use rdkafka::admin::ResourceSpecifier;
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let described = admin(broker)
        .describe_configs(&[ResourceSpecifier::Broker(0)], &options)
        .await
        .expect("describe_configs");
    let resource = described
        .into_iter()
        .next()
        .unwrap()
        .expect("broker described");
    resource
        .entries
        .iter()
        .map(|entry| {
            let value = entry.value.clone().unwrap_or_default();
            let source = format!("{:?}", entry.source);
            (entry.name.clone(), (value, source, entry.is_read_only))
        })
        .collect()
}

/// AlterConfigs: replaces the dynamic set of broker 0. (librdkafka sends a broker's configs
/// to that broker, so another id would never be answered.)
async fn alter_broker(
    broker: &BrokerProcess,
    configs: &[(&str, &str)],
) -> Result<(), RDKafkaErrorCode> {
    use rdkafka::admin::{AlterConfig, ResourceSpecifier};
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let mut change = AlterConfig::new(ResourceSpecifier::Broker(0));
    for (key, value) in configs {
        change = change.set(key, value);
    }
    let results = admin(broker)
        .alter_configs(&[change], &options)
        .await
        .expect("alter_configs");
    results
        .into_iter()
        .next()
        .unwrap()
        .map(|_| ())
        .map_err(|(_, code)| code)
}

/// Broker configs through librdkafka's admin API: described with values and sources; the
/// dynamic ones (log defaults, num.partitions) change at runtime — message.max.bytes
/// refuses a batch on a topic created before the change — and survive kill -9; read-only,
/// unknown and out-of-range ones change nothing.
#[tokio::test]
async fn broker_configs_describe_alter_apply_at_runtime_and_persist() {
    let mut broker = BrokerProcess::start(2);
    let describe = describe_broker;
    let entry = |value: &str, source: &str, read_only: bool| {
        (value.to_string(), source.to_string(), read_only)
    };
    let before = describe(&broker).await;
    assert_eq!(
        before["log.retention.ms"],
        entry("604800000", "Default", false)
    );
    assert_eq!(before["num.partitions"], entry("1", "Default", false));
    let dirs = &before["log.dirs"];
    assert_eq!(
        (&dirs.0, dirs.2),
        (&broker.data_dir().display().to_string(), true)
    );
    assert_eq!(before["broker.id"].0, "0");

    create_topic(&broker, "existing", 1, &[])
        .await
        .expect("topic created");
    let alter = |configs: Vec<(&'static str, &'static str)>| {
        let broker = &broker;
        async move { alter_broker(broker, &configs).await }
    };
    assert_eq!(
        alter(vec![
            ("log.retention.ms", "3600000"),
            ("num.partitions", "3"),
            ("message.max.bytes", "500")
        ])
        .await,
        Ok(())
    );
    let after = describe(&broker).await;
    assert_eq!(
        after["log.retention.ms"],
        entry("3600000", "DynamicBroker", false)
    );
    assert_eq!(after["num.partitions"].0, "3");
    // Applied at runtime: the existing topic takes the new default, a new one the count.
    let producer = producer(&broker, &[("linger.ms", "0")]);
    let large = "x".repeat(1000);
    let refused = producer
        .send(
            FutureRecord::<(), _>::to("existing").payload(&large),
            TIMEOUT,
        )
        .await;
    assert!(
        matches!(
            &refused,
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    RDKafkaErrorCode::MessageSizeTooLarge
                ),
                _
            ))
        ),
        "{refused:?}"
    );
    producer
        .send(
            FutureRecord::<(), _>::to("auto-sized").payload("small"),
            TIMEOUT,
        )
        .await
        .expect("delivered");
    assert!(topic_partition_counts(&broker).contains(&("auto-sized".to_string(), 3)));

    // Refused, and nothing changes. (The rdkafka crate drops the per-resource error of
    // AlterConfigs, so the error codes are checked with kafka-python and Kafka's
    // kafka-configs; here only that the refused changes left everything as it was.)
    for refused in [
        vec![("log.dirs", "/elsewhere")],
        vec![("log.segment.bytes", "5")],
        vec![("no.such.config", "1")],
    ] {
        let _ = alter(refused.clone()).await;
        assert_eq!(describe(&broker).await, after, "{refused:?}");
    }

    // AlterConfigs replaces the broker's dynamic set: message.max.bytes is back to default.
    assert_eq!(
        alter(vec![
            ("log.retention.ms", "3600000"),
            ("num.partitions", "3")
        ])
        .await,
        Ok(())
    );
    producer
        .send(
            FutureRecord::<(), _>::to("existing").payload(&large),
            TIMEOUT,
        )
        .await
        .expect("delivered once message.max.bytes is back to its default");

    broker.kill_and_restart();
    let restarted = describe(&broker).await;
    assert_eq!(
        restarted["log.retention.ms"],
        entry("3600000", "DynamicBroker", false)
    );
    assert_eq!(
        restarted["num.partitions"],
        entry("3", "DynamicBroker", false)
    );
    assert_eq!(restarted["message.max.bytes"].1, "Default");
}

/// librdkafka with idempotence and 5 requests in flight per connection, small batches, and
/// segments small enough to roll many times while requests are in flight: every message is
/// stored once, in the order it was sent, on its partition.
#[tokio::test]
async fn pipelined_idempotent_producer_keeps_order_across_segment_rolls() {
    let broker = BrokerProcess::start(2);
    create_topic(&broker, "pipelined", 2, &[("segment.bytes", "16384")])
        .await
        .expect("topic created");
    let producer = producer(
        &broker,
        &[
            ("enable.idempotence", "true"),
            ("max.in.flight.requests.per.connection", "5"),
            ("linger.ms", "0"),
            ("batch.num.messages", "20"),
        ],
    );
    const MESSAGES: usize = 4000;
    let sends = (0..MESSAGES).map(|i| {
        let value = format!("message {i:05} {}", "x".repeat(100));
        let producer = &producer;
        async move {
            producer
                .send(
                    FutureRecord::<(), _>::to("pipelined")
                        .partition((i % 2) as i32)
                        .payload(&value),
                    TIMEOUT,
                )
                .await
        }
    });
    let mut next_offset = [0i64; 2];
    for (i, delivered) in futures_util::future::join_all(sends)
        .await
        .into_iter()
        .enumerate()
    {
        let delivered = delivered.expect("delivered");
        assert_eq!(delivered.partition, (i % 2) as i32);
        assert_eq!(
            delivered.offset,
            next_offset[i % 2],
            "message {i}: in order, no gaps, no duplicates"
        );
        next_offset[i % 2] += 1;
    }
    let consumer = consumer_from_beginning(&broker, "pipelined", 2);
    let mut by_partition: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for (partition, offset, _, value) in consume(&consumer, MESSAGES) {
        by_partition
            .entry(partition)
            .or_default()
            .push((offset, value[..13].to_string()));
    }
    for partition in 0..2 {
        let expected: Vec<(i64, String)> = (0..MESSAGES)
            .filter(|i| i % 2 == partition as usize)
            .enumerate()
            .map(|(offset, i)| (offset as i64, format!("message {i:05}")))
            .collect();
        assert_eq!(by_partition[&partition], expected, "partition {partition}");
    }
    let segments = std::fs::read_dir(broker.data_dir().join("pipelined-0"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
        .count();
    assert!(segments > 5, "segments rolled meanwhile ({segments})");
}

/// A consumer whose fetch.max.bytes is far below the backlog of several partitions gets
/// responses within it (librdkafka drops a response larger than it asked for) and reads
/// every message, in order on each partition.
#[tokio::test]
async fn a_consumer_with_a_small_fetch_max_bytes_reads_a_large_backlog() {
    let broker = BrokerProcess::start(2);
    create_topic(&broker, "backlog", 4, &[])
        .await
        .expect("topic created");
    let producer = producer(&broker, &[("linger.ms", "20")]);
    const MESSAGES: usize = 6000;
    let sends = (0..MESSAGES).map(|i| {
        let value = format!("{i:06} {}", "x".repeat(1000));
        let producer = &producer;
        async move {
            producer
                .send(
                    FutureRecord::<(), _>::to("backlog")
                        .partition((i % 4) as i32)
                        .payload(&value),
                    TIMEOUT,
                )
                .await
        }
    });
    for delivered in futures_util::future::join_all(sends).await {
        delivered.expect("delivered");
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("enable.auto.commit", "false")
        .set("group.id", "unused-no-subscribe")
        .set("fetch.max.bytes", "1000000")
        .set("max.partition.fetch.bytes", "10000000")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..4 {
        assignment
            .add_partition_offset("backlog", partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut by_partition: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (partition, _, _, value) in consume(&consumer, MESSAGES) {
        by_partition
            .entry(partition)
            .or_default()
            .push(value[..6].to_string());
    }
    for partition in 0..4 {
        let expected: Vec<String> = (0..MESSAGES)
            .filter(|i| i % 4 == partition as usize)
            .map(|i| format!("{i:06}"))
            .collect();
        assert_eq!(by_partition[&partition], expected, "partition {partition}");
    }
}
