//! The broker against what operators and crashes do, on a real `ringlog serve`: topics
//! deleted and created again under the same name across kill -9, partitions that cannot be
//! opened, and the limits on connections and buffered request bytes.

mod broker;

use std::path::Path;

use broker::BrokerProcess;

/// The records of `topic` from the beginning, as `partition:value` lines, sorted.
fn read_all(broker: &BrokerProcess, topic: &str) -> Vec<String> {
    let (ok, out, err) = broker.cli(
        &["consume", topic, "--from-beginning", "-e", "-f", "%p:%s"],
        "",
    );
    assert!(ok, "consume {topic}: {err}");
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

fn create_and_fill(broker: &BrokerProcess, topic: &str, tag: &str) -> Vec<String> {
    let (ok, _, err) = broker.cli(&["topic", "create", topic, "-p", "2"], "");
    assert!(ok, "create {topic}: {err}");
    let mut expected = Vec::new();
    for partition in ["0", "1"] {
        let input: String = (0..3).map(|i| format!("{tag} {i}\n")).collect();
        let (ok, _, err) = broker.cli(&["produce", topic, "-p", partition], &input);
        assert!(ok, "produce {topic}: {err}");
        expected.extend((0..3).map(|i| format!("{partition}:{tag} {i}")));
    }
    expected.sort();
    assert_eq!(read_all(broker, topic), expected);
    expected
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A topic deleted and created again under its name starts empty however a kill -9 cuts the
/// deletion short: right after DeleteTopics is answered, and with the old partition
/// directories put back as if their rename and removal never ran (a crash between the
/// catalog change and the directories' rename).
#[tokio::test]
async fn a_deleted_topic_created_again_never_serves_the_old_records() {
    let mut broker = BrokerProcess::start(2);
    for round in 0..3 {
        create_and_fill(&broker, "ledger", &format!("old {round}"));
        let (ok, _, err) = broker.cli(&["topic", "delete", "ledger"], "");
        assert!(ok, "{err}");
        broker.kill_and_restart();
        let (ok, _, err) = broker.cli(&["topic", "create", "ledger", "-p", "2"], "");
        assert!(ok, "{err}");
        assert_eq!(
            read_all(&broker, "ledger"),
            Vec::<String>::new(),
            "round {round}"
        );
        let (ok, _, err) = broker.cli(&["topic", "delete", "ledger"], "");
        assert!(ok, "{err}");
    }

    create_and_fill(&broker, "journal", "old");
    broker.kill();
    let backup = tempfile::tempdir().unwrap();
    for partition in ["journal-0", "journal-1"] {
        copy_dir(
            &broker.data_dir().join(partition),
            &backup.path().join(partition),
        );
    }
    broker.kill_and_restart();
    let (ok, _, err) = broker.cli(&["topic", "delete", "journal"], "");
    assert!(ok, "{err}");
    broker.kill();
    for partition in ["journal-0", "journal-1"] {
        let dir = broker.data_dir().join(partition);
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&backup.path().join(partition), &dir);
    }
    broker.kill_and_restart();
    for partition in ["journal-0", "journal-1"] {
        assert!(
            !broker.data_dir().join(partition).exists(),
            "{partition}: a deleted topic's directory is removed at start-up"
        );
    }
    let (ok, _, err) = broker.cli(&["topic", "create", "journal", "-p", "2"], "");
    assert!(ok, "{err}");
    assert_eq!(read_all(&broker, "journal"), Vec::<String>::new());
    let (ok, _, err) = broker.cli(&["produce", "journal", "-p", "0"], "new\n");
    assert!(ok, "{err}");
    assert_eq!(read_all(&broker, "journal"), vec!["0:new".to_string()]);

    // The same with the directories of a topic created again put back under the new topic:
    // a partition directory of another topic id is discarded when the partition opens.
    broker.kill();
    let _ = std::fs::remove_dir_all(broker.data_dir().join("journal-1"));
    copy_dir(
        &backup.path().join("journal-1"),
        &broker.data_dir().join("journal-1"),
    );
    broker.kill_and_restart();
    assert_eq!(read_all(&broker, "journal"), vec!["0:new".to_string()]);
    let leftovers: Vec<String> = std::fs::read_dir(broker.data_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with("-delete"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// With a low open files limit, topics are created until their files no longer fit; the
/// next CreateTopics is refused naming the cause and leaves nothing behind (no catalog
/// entry, no directory); the topics that fit keep working, and a restart under the same
/// limit serves them all.
#[tokio::test]
async fn a_low_open_files_limit_gives_clear_refusals_and_a_clean_restart() {
    let mut broker = BrokerProcess::start_with_open_files(2, 160);
    let mut created = Vec::new();
    let refusal = loop {
        let topic = format!("t{}", created.len());
        let (ok, out, err) = broker.cli(&["topic", "create", &topic, "-p", "8"], "");
        if !ok {
            break format!("{out}{err}");
        }
        created.push(topic);
        assert!(created.len() < 40, "160 open files never ran out");
    };
    assert!(!created.is_empty(), "no topic fit: {refusal}");
    assert!(refusal.contains("Too many open files"), "{refusal}");
    let refused = format!("t{}", created.len());
    let (ok, out, err) = broker.cli(&["topic", "list"], "");
    assert!(ok, "{err}");
    assert!(
        !out.lines()
            .any(|line| line.split_whitespace().next() == Some(refused.as_str())),
        "{out}"
    );
    assert!(
        (0..8).all(|p| !broker.data_dir().join(format!("{refused}-{p}")).exists()),
        "the refused topic's directories are gone"
    );
    let (ok, _, err) = broker.cli(&["produce", &created[0], "-p", "3"], "kept\n");
    assert!(ok, "{err}");

    broker.kill_and_restart();
    let (ok, out, err) = broker.cli(&["topic", "list"], "");
    assert!(ok, "{err}");
    for topic in &created {
        assert!(
            out.lines()
                .any(|line| line.split_whitespace().next() == Some(topic.as_str())),
            "{topic} in {out}"
        );
    }
    assert_eq!(read_all(&broker, &created[0]), vec!["3:kept".to_string()]);
}

/// Metadata's view of `topic`: (partition, error code, leader) for each partition.
async fn partition_states(broker: &BrokerProcess, topic: &str) -> Vec<(i32, i16, i32)> {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut client = protocol::client::Client::connect(&broker.address, "states")
        .await
        .unwrap();
    let request =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))]));
    let response = client.send(&request).await.unwrap();
    response.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.error_code, p.leader_id.0))
        .collect()
}

/// A partition that cannot be opened at start-up (its partition.metadata is damaged) leaves
/// the broker serving the others; Metadata reports it with KAFKA_STORAGE_ERROR and no
/// leader; once the cause is repaired the next request opens it, without a restart.
#[tokio::test]
async fn a_partition_that_cannot_open_is_offline_and_the_rest_serve() {
    let mut broker = BrokerProcess::start(2);
    let expected = create_and_fill(&broker, "split", "kept");
    broker.kill();
    let metadata = broker.data_dir().join("split-1").join("partition.metadata");
    let original = std::fs::read(&metadata).unwrap();
    std::fs::write(&metadata, b"garbage").unwrap();
    broker.kill_and_restart();
    assert_eq!(
        partition_states(&broker, "split").await,
        vec![
            (0, 0, 0),
            (1, protocol::ErrorCode::KafkaStorageError.code(), -1)
        ]
    );
    let (ok, out, err) = broker.cli(
        &["consume", "split", "-p", "0", "--from-beginning", "-e"],
        "",
    );
    assert!(
        ok && out.lines().count() == 3,
        "partition 0 serves: {out}{err}"
    );
    let (ok, _, err) = broker.cli(&["produce", "split", "-p", "1"], "refused\n");
    assert!(!ok, "a produce to the offline partition fails");
    assert!(
        err.contains("KafkaStorageError") || err.contains("56"),
        "{err}"
    );

    std::fs::write(&metadata, original).unwrap();
    let (ok, _, err) = broker.cli(&["produce", "split", "-p", "1"], "after repair\n");
    assert!(ok, "{err}");
    assert_eq!(
        partition_states(&broker, "split").await,
        vec![(0, 0, 0), (1, 0, 0)]
    );
    let mut all = expected;
    all.push("1:after repair".to_string());
    all.sort();
    assert_eq!(read_all(&broker, "split"), all);
}
