//! Apache Kafka's own CLI tools and its Java client (the protocol's reference
//! implementation) against a real ringlog process, the way the Kafka quickstart uses them.
//! They come from Maven Central through `benches/kafka/fetch` (run on first use, then
//! reused); Java 17+ and Maven are expected, and a missing one fails the test with the cause.

mod broker;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use broker::BrokerProcess;

fn kafka_script() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../benches/kafka/kafka"
    ))
}

/// One of Kafka's tools (`kafka-topics`, ...) or `java ...`: success, stdout, stderr.
fn kafka(args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(kafka_script())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run benches/kafka/kafka: {error}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A tool that must succeed; its stdout.
fn tool(name: &str, broker: &BrokerProcess, args: &[&str], stdin: &str) -> String {
    tool_outputs(name, broker, args, stdin).0
}

/// A tool that must succeed; its stdout and stderr.
fn tool_outputs(
    name: &str,
    broker: &BrokerProcess,
    args: &[&str],
    stdin: &str,
) -> (String, String) {
    let mut all = vec![name, "--bootstrap-server", &broker.address];
    all.extend_from_slice(args);
    let (ok, out, err) = kafka(&all, stdin);
    assert!(ok, "{} failed:\n{out}\n{err}", all.join(" "));
    (out, err)
}

/// `kafka-topics --create` as the quickstart runs it.
fn create_topic(broker: &BrokerProcess, topic: &str, partitions: u32) {
    let partitions = partitions.to_string();
    let out = tool(
        "kafka-topics",
        broker,
        &["--create", "--topic", topic, "--partitions", &partitions],
        "",
    );
    assert_eq!(lines(&out), vec![format!("Created topic {topic}.")]);
}

/// `kafka-console-producer` with `key:value` lines, as the quickstart runs it.
fn produce_keyed(broker: &BrokerProcess, topic: &str, input: &str) {
    tool(
        "kafka-console-producer",
        broker,
        &[
            "--topic",
            topic,
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
        ],
        input,
    );
}

/// The non-empty lines, trimmed of trailing blanks.
fn lines(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Splits a table row into its whitespace-separated cells.
fn cells(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[test]
fn kafka_topics_creates_describes_lists_alters_and_deletes() {
    let broker = BrokerProcess::start(2);
    create_topic(&broker, "quickstart-events", 3);

    // Creating it again: Kafka's error, named.
    let (ok, out, err) = kafka(
        &[
            "kafka-topics",
            "--bootstrap-server",
            &broker.address,
            "--create",
            "--topic",
            "quickstart-events",
        ],
        "",
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("TopicExistsException") && err.contains("quickstart-events"),
        "{err}"
    );

    let out = tool(
        "kafka-topics",
        &broker,
        &["--describe", "--topic", "quickstart-events"],
        "",
    );
    let described = lines(&out);
    assert!(
        described[0].starts_with("Topic: quickstart-events\tTopicId: ")
            && described[0].contains("PartitionCount: 3\tReplicationFactor: 1"),
        "{out}"
    );
    for partition in 0..3 {
        let line = &described[1 + partition];
        assert!(
            line.contains(&format!(
                "Partition: {partition}\tLeader: 0\tReplicas: 0\tIsr: 0"
            )),
            "{out}"
        );
    }
    assert_eq!(described.len(), 4, "{out}");

    tool(
        "kafka-topics",
        &broker,
        &["--create", "--topic", "second-topic"],
        "",
    );
    let out = tool("kafka-topics", &broker, &["--list"], "");
    assert_eq!(lines(&out), vec!["quickstart-events", "second-topic"]);

    tool(
        "kafka-topics",
        &broker,
        &[
            "--alter",
            "--topic",
            "quickstart-events",
            "--partitions",
            "5",
        ],
        "",
    );
    let out = tool(
        "kafka-topics",
        &broker,
        &["--describe", "--topic", "quickstart-events"],
        "",
    );
    assert!(out.contains("PartitionCount: 5"), "{out}");
    assert!(out.contains("Partition: 4\tLeader: 0"), "{out}");

    // Fewer partitions is refused, as Kafka refuses it.
    let (ok, out, err) = kafka(
        &[
            "kafka-topics",
            "--bootstrap-server",
            &broker.address,
            "--alter",
            "--topic",
            "quickstart-events",
            "--partitions",
            "2",
        ],
        "",
    );
    assert!(!ok, "{out}");
    assert!(err.contains("InvalidPartitionsException"), "{err}");

    tool(
        "kafka-topics",
        &broker,
        &["--delete", "--topic", "quickstart-events"],
        "",
    );
    let out = tool("kafka-topics", &broker, &["--list"], "");
    assert_eq!(lines(&out), vec!["second-topic"]);
}

#[test]
fn kafka_console_producer_and_consumer_round_trip_keys() {
    let broker = BrokerProcess::start(2);
    create_topic(&broker, "quickstart-events", 3);
    let input =
        "user-1:This is my first event\nuser-2:This is my second event\nuser-1:and a third\n";
    produce_keyed(&broker, "quickstart-events", input);
    let out = tool(
        "kafka-console-consumer",
        &broker,
        &[
            "--topic",
            "quickstart-events",
            "--from-beginning",
            "--max-messages",
            "3",
            "--property",
            "print.key=true",
            "--property",
            "print.partition=true",
            "--property",
            "key.separator=|",
        ],
        "",
    );
    let mut got = lines(&out);
    got.sort();
    // The Java producer's default partitioner is murmur2 of the key, as ours.
    let p1 = protocol::partitioner::partition_for_key(b"user-1", 3);
    let p2 = protocol::partitioner::partition_for_key(b"user-2", 3);
    let mut expected = vec![
        format!("Partition:{p1}|user-1|This is my first event"),
        format!("Partition:{p1}|user-1|and a third"),
        format!("Partition:{p2}|user-2|This is my second event"),
    ];
    expected.sort();
    assert_eq!(got, expected);
    // Within a partition, in the order produced.
    let ordered: Vec<String> = lines(&out)
        .into_iter()
        .filter(|l| l.contains("user-1"))
        .collect();
    assert_eq!(
        ordered,
        vec![
            format!("Partition:{p1}|user-1|This is my first event"),
            format!("Partition:{p1}|user-1|and a third")
        ]
    );
}

/// Batches the broker compressed itself (topics with compression.type gzip, snappy, lz4 and
/// zstd, produced uncompressed and with another codec) are read by Kafka's console consumer.
#[test]
fn kafka_console_consumer_reads_batches_the_broker_compressed() {
    let broker = BrokerProcess::start(2);
    let mut expected = Vec::new();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("compressed-{codec}");
        let config = format!("compression.type={codec}");
        let (ok, _, err) = broker.cli(&["topic", "create", &topic, "-c", &config], "");
        assert!(ok, "{err}");
        for sent in ["none", "gzip"] {
            let input: String = (0..3)
                .map(|i| format!("{codec} topic, sent {sent}, record {i}\n"))
                .collect();
            let (ok, _, err) = broker.cli(&["produce", &topic, "--compression", sent], &input);
            assert!(ok, "{err}");
            expected.extend(input.lines().map(str::to_string));
        }
    }
    let max_messages = expected.len().to_string();
    let (out, err) = tool_outputs(
        "kafka-console-consumer",
        &broker,
        &[
            "--include",
            "compressed-.*",
            "--from-beginning",
            "--max-messages",
            &max_messages,
        ],
        "",
    );
    let mut got = lines(&out);
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "{err}");
}

#[test]
fn kafka_consumer_groups_list_describe_and_reset_offsets() {
    let broker = BrokerProcess::start_with(2, &["--group-initial-rebalance-delay-ms", "0"]);
    create_topic(&broker, "orders", 2);
    let input: String = (0..10).map(|i| format!("k{i}:order-{i}\n")).collect();
    produce_keyed(&broker, "orders", &input);
    // A console consumer in a group reads everything and commits on exit.
    let out = tool(
        "kafka-console-consumer",
        &broker,
        &[
            "--topic",
            "orders",
            "--group",
            "order-readers",
            "--from-beginning",
            "--max-messages",
            "10",
        ],
        "",
    );
    let mut values = lines(&out);
    values.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("order-{i}")).collect();
    expected.sort();
    assert_eq!(values, expected);

    let out = tool("kafka-consumer-groups", &broker, &["--list"], "");
    assert_eq!(lines(&out), vec!["order-readers"]);

    let per_partition = |out: &str| -> Vec<(String, String, String, String)> {
        let mut rows: Vec<_> = lines(out)
            .iter()
            .filter(|l| l.starts_with("order-readers "))
            .map(|l| {
                let c = cells(l);
                (
                    c[2].to_string(),
                    c[3].to_string(),
                    c[4].to_string(),
                    c[5].to_string(),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    let ends: Vec<String> = {
        let out = tool("kafka-get-offsets", &broker, &["--topic", "orders"], "");
        let mut rows = lines(&out);
        rows.sort();
        rows.iter()
            .map(|l| l.rsplit(':').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ends.iter().map(|e| e.parse::<u64>().unwrap()).sum::<u64>(),
        10
    );
    let (out, err) = tool_outputs(
        "kafka-consumer-groups",
        &broker,
        &["--describe", "--group", "order-readers"],
        "",
    );
    assert!(
        err.contains("Consumer group 'order-readers' has no active members."),
        "{out}\n{err}"
    );
    assert_eq!(
        per_partition(&out),
        vec![
            ("0".into(), ends[0].clone(), ends[0].clone(), "0".into()),
            ("1".into(), ends[1].clone(), ends[1].clone(), "0".into()),
        ],
        "committed = log end, lag 0:\n{out}"
    );

    let out = tool(
        "kafka-consumer-groups",
        &broker,
        &[
            "--reset-offsets",
            "--group",
            "order-readers",
            "--topic",
            "orders",
            "--to-earliest",
            "--execute",
        ],
        "",
    );
    let mut reset: Vec<Vec<String>> = lines(&out)
        .iter()
        .filter(|l| l.starts_with("order-readers "))
        .map(|l| cells(l).iter().map(|c| c.to_string()).collect())
        .collect();
    reset.sort();
    assert_eq!(
        reset,
        vec![
            vec!["order-readers", "orders", "0", "0"],
            vec!["order-readers", "orders", "1", "0"]
        ],
        "{out}"
    );
    let out = tool(
        "kafka-consumer-groups",
        &broker,
        &["--describe", "--group", "order-readers"],
        "",
    );
    assert_eq!(
        per_partition(&out),
        vec![
            ("0".into(), "0".into(), ends[0].clone(), ends[0].clone()),
            ("1".into(), "0".into(), ends[1].clone(), ends[1].clone()),
        ],
        "after --to-earliest the lag is the whole log:\n{out}"
    );

    // The group reads everything again from the reset offsets.
    let out = tool(
        "kafka-console-consumer",
        &broker,
        &[
            "--topic",
            "orders",
            "--group",
            "order-readers",
            "--max-messages",
            "10",
        ],
        "",
    );
    let mut again = lines(&out);
    again.sort();
    assert_eq!(again, expected);
}

/// `kafka-get-offsets --time -2`: every partition's `topic:partition:earliest`, sorted.
fn earliest_offsets(broker: &BrokerProcess, topic: &str) -> Vec<String> {
    let out = tool(
        "kafka-get-offsets",
        broker,
        &["--topic", topic, "--time", "-2"],
        "",
    );
    let mut earliest = lines(&out);
    earliest.sort();
    earliest
}

#[test]
fn kafka_configs_and_get_offsets() {
    let broker = BrokerProcess::start(2);
    create_topic(&broker, "events", 2);
    // kafka-configs on the topic "events", with these arguments after the entity.
    let configs = |args: &[&str]| {
        let mut all = vec![
            "kafka-configs",
            "--bootstrap-server",
            &broker.address,
            "--entity-type",
            "topics",
            "--entity-name",
            "events",
        ];
        all.extend_from_slice(args);
        kafka(&all, "")
    };
    let (ok, out, err) = configs(&["--alter", "--add-config", "retention.ms=86400000"]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        lines(&out),
        vec!["Completed updating config for topic events."]
    );
    let (ok, out, err) = configs(&["--describe"]);
    assert!(ok, "{out}\n{err}");
    let described = lines(&out);
    assert_eq!(
        described[0], "Dynamic configs for topic events are:",
        "{out}"
    );
    assert!(
        described[1..]
            .iter()
            .any(|l| l.trim_start().starts_with("retention.ms=86400000 ")),
        "{out}"
    );
    // An unknown config is refused with Kafka's error.
    let (ok, out, err) = configs(&["--alter", "--add-config", "no.such.config=1"]);
    assert!(!ok, "{out}");
    assert!(err.contains("no.such.config"), "{err}");
    let (ok, out, err) = configs(&["--alter", "--delete-config", "retention.ms"]);
    assert!(
        ok && out.contains("Completed updating config"),
        "{out}\n{err}"
    );
    let (ok, out, err) = configs(&["--describe"]);
    assert!(ok && !out.contains("retention.ms="), "{out}\n{err}");

    // Keyed records through the Java producer; its murmur2 partitioner decides the counts.
    let input: String = (0..11).map(|i| format!("key-{i}:e{i}\n")).collect();
    produce_keyed(&broker, "events", &input);
    let mut counts = [0u32; 2];
    for i in 0..11 {
        counts[protocol::partitioner::partition_for_key(format!("key-{i}").as_bytes(), 2)
            as usize] += 1;
    }
    let out = tool("kafka-get-offsets", &broker, &["--topic", "events"], "");
    let mut latest = lines(&out);
    latest.sort();
    assert_eq!(
        latest,
        vec![
            format!("events:0:{}", counts[0]),
            format!("events:1:{}", counts[1])
        ]
    );
    let earliest = earliest_offsets(&broker, "events");
    assert_eq!(earliest, vec!["events:0:0", "events:1:0"]);

    // kafka-delete-records moves the log start: all of partition 0, one record of 1.
    assert!(counts[1] >= 1, "{counts:?}");
    let dir = tempfile::tempdir().unwrap();
    let offsets = dir.path().join("offsets.json");
    std::fs::write(
        &offsets,
        format!(
            r#"{{"version":1,"partitions":[{{"topic":"events","partition":0,"offset":{}}},{{"topic":"events","partition":1,"offset":1}}]}}"#,
            counts[0]
        ),
    )
    .unwrap();
    let out = tool(
        "kafka-delete-records",
        &broker,
        &["--offset-json-file", offsets.to_str().unwrap()],
        "",
    );
    let mut deleted: Vec<String> = lines(&out)
        .into_iter()
        .filter(|line| line.starts_with("partition:"))
        .map(|line| cells(&line).join(" "))
        .collect();
    deleted.sort();
    assert_eq!(
        deleted,
        vec![
            format!("partition: events-0 low_watermark: {}", counts[0]),
            "partition: events-1 low_watermark: 1".to_string()
        ],
        "{out}"
    );
    let earliest = earliest_offsets(&broker, "events");
    assert_eq!(
        earliest,
        vec![format!("events:0:{}", counts[0]), "events:1:1".to_string()]
    );
}

fn java_check(check: &str) {
    let broker = BrokerProcess::start_with(2, &["--group-initial-rebalance-delay-ms", "0"]);
    let program = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/java/JavaClientChecks.java"
    );
    let (ok, out, err) = kafka(&["java", program, &broker.address, check], "");
    assert!(ok, "Java client check '{check}' failed:\n{out}\n{err}");
    assert!(
        out.lines().any(|l| l == format!("{check} ok")),
        "{out}\n{err}"
    );
}

#[test]
fn java_producer_idempotent_acks_all_reads_back_every_record() {
    java_check("producer");
}

#[test]
fn java_consumer_group_of_three_rebalances_when_one_leaves() {
    java_check("group");
}

#[test]
fn java_consumer_manual_and_auto_commit() {
    java_check("commits");
}

#[test]
fn java_consumer_seek_and_offsets_for_times() {
    java_check("seek");
}

#[test]
fn java_admin_client_topics_configs_cluster_and_groups() {
    java_check("admin");
}

#[test]
fn java_client_gets_named_errors_for_transactions_and_the_consumer_protocol() {
    java_check("unsupported");
}

/// `kafka-configs` on the broker (its id and the cluster-wide default) and on groups, each
/// output line as Kafka 4.1 prints it for the same state.
#[test]
fn kafka_configs_describes_and_alters_broker_and_group_configs() {
    let broker = BrokerProcess::start(2);
    // kafka-configs with its arguments in one string.
    let configs = |args: &str| {
        let mut all = vec!["kafka-configs", "--bootstrap-server", &broker.address];
        all.extend(args.split_whitespace());
        kafka(&all, "")
    };
    let (ok, out, err) = configs("--describe --entity-type brokers --entity-name 0 --all");
    assert!(ok, "{err}");
    let all = lines(&out);
    assert_eq!(all[0], "All configs for broker 0 are:");
    for line in [
        "  num.partitions=1 sensitive=false synonyms={DEFAULT_CONFIG:num.partitions=1}",
        "  message.max.bytes=1048588 sensitive=false synonyms={DEFAULT_CONFIG:message.max.bytes=1048588}",
        "  auto.create.topics.enable=true sensitive=false synonyms={DEFAULT_CONFIG:auto.create.topics.enable=true}",
    ] {
        assert!(all.iter().any(|l| l == line), "{line} not in\n{out}");
    }

    let (ok, out, err) = configs(
        "--alter --entity-type brokers --entity-name 0 --add-config log.retention.ms=3600000",
    );
    assert!(
        ok && lines(&out) == ["Completed updating config for broker 0."],
        "{out}{err}"
    );
    let (ok, out, err) = configs(
        "--alter --entity-type brokers --entity-default --add-config log.retention.bytes=1000000",
    );
    assert!(
        ok && lines(&out) == ["Completed updating default config for brokers in the cluster."],
        "{out}{err}"
    );
    let (ok, out, err) = configs("--describe --entity-type brokers --entity-name 0");
    assert!(ok, "{err}");
    assert_eq!(
        lines(&out),
        [
            "Dynamic configs for broker 0 are:",
            "  log.retention.ms=3600000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:log.retention.ms=3600000, DEFAULT_CONFIG:log.retention.ms=604800000}",
        ]
    );
    let (ok, out, err) = configs("--describe --entity-type brokers --entity-default");
    assert!(ok, "{err}");
    assert_eq!(
        lines(&out),
        [
            "Default configs for brokers in the cluster are:",
            "  log.retention.bytes=1000000 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.bytes=1000000}",
        ]
    );
    // A static config is refused with Kafka's exception, naming it.
    let (ok, out, err) =
        configs("--alter --entity-type brokers --entity-name 0 --add-config log.dirs=/elsewhere");
    assert!(!ok, "{out}");
    assert!(
        err.contains("InvalidRequestException: cannot update these configs dynamically: log.dirs"),
        "{err}"
    );

    // Group configs: the defaults, exactly as Kafka 4.1 lists them for a group.
    let (ok, out, err) = configs("--describe --entity-type groups --entity-name g1 --all");
    assert!(ok, "{err}");
    let expected: Vec<String> = [
        "All configs for group g1 are:",
        "  consumer.heartbeat.interval.ms=5000 sensitive=false synonyms={DEFAULT_CONFIG:consumer.heartbeat.interval.ms=5000}",
        "  consumer.session.timeout.ms=45000 sensitive=false synonyms={DEFAULT_CONFIG:consumer.session.timeout.ms=45000}",
        "  share.auto.offset.reset=latest sensitive=false synonyms={DEFAULT_CONFIG:share.auto.offset.reset=latest}",
        "  share.heartbeat.interval.ms=5000 sensitive=false synonyms={DEFAULT_CONFIG:share.heartbeat.interval.ms=5000}",
        "  share.isolation.level=read_uncommitted sensitive=false synonyms={DEFAULT_CONFIG:share.isolation.level=read_uncommitted}",
        "  share.record.lock.duration.ms=30000 sensitive=false synonyms={DEFAULT_CONFIG:share.record.lock.duration.ms=30000}",
        "  share.session.timeout.ms=45000 sensitive=false synonyms={DEFAULT_CONFIG:share.session.timeout.ms=45000}",
        "  streams.heartbeat.interval.ms=5000 sensitive=false synonyms={DEFAULT_CONFIG:streams.heartbeat.interval.ms=5000}",
        "  streams.num.standby.replicas=0 sensitive=false synonyms={DEFAULT_CONFIG:streams.num.standby.replicas=0}",
        "  streams.session.timeout.ms=45000 sensitive=false synonyms={DEFAULT_CONFIG:streams.session.timeout.ms=45000}",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(lines(&out), expected);
    // Setting one is refused, naming it: ringlog has only classic groups.
    let (ok, out, err) = configs("--alter --entity-type groups --entity-name g1 --add-config consumer.session.timeout.ms=50000");
    assert!(!ok, "{out}");
    assert!(
        err.contains("InvalidConfigurationException: consumer.session.timeout.ms applies to"),
        "{err}"
    );
}
