//! Consumer groups with librdkafka: partitions spread across members, every message
//! delivered once, committed offsets honoured when a member leaves, pub-sub across groups.

mod broker;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use broker::BrokerProcess;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

const TIMEOUT: Duration = Duration::from_secs(20);
const GROUP_FLAGS: &[&str] = &[
    "--group-min-session-timeout-ms",
    "100",
    "--group-initial-rebalance-delay-ms",
    "500",
];

fn member(broker: &BrokerProcess, group: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "2000")
        .set("heartbeat.interval.ms", "200")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

async fn produce(broker: &BrokerProcess, topic: &str, range: std::ops::Range<usize>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("partitioner", "murmur2_random")
        .create()
        .expect("producer");
    for i in range {
        producer
            .send(
                FutureRecord::to(topic)
                    .key(&format!("key-{}", i % 9))
                    .payload(&format!("message {i}")),
                TIMEOUT,
            )
            .await
            .expect("delivered");
    }
}

/// Polls every member until `count` messages arrived in total; returns each member's
/// (partition, value) list.
fn poll_until(members: &[&BaseConsumer], count: usize) -> Vec<Vec<(i32, String)>> {
    let mut received: Vec<Vec<(i32, String)>> = vec![Vec::new(); members.len()];
    let deadline = Instant::now() + TIMEOUT;
    while received.iter().map(Vec::len).sum::<usize>() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} messages",
            received.iter().map(Vec::len).sum::<usize>()
        );
        for (at, consumer) in members.iter().enumerate() {
            if let Some(message) = consumer.poll(Duration::from_millis(50)) {
                let message = message.expect("message");
                let value =
                    String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
                received[at].push((message.partition(), value));
            }
        }
    }
    received
}

#[tokio::test]
async fn three_members_share_three_partitions_and_a_leaver_hands_over_at_its_commit() {
    let broker = BrokerProcess::start_with(2, GROUP_FLAGS);
    let (ok, _, err) = broker.cli(&["topic", "create", "orders", "--partitions", "3"], "");
    assert!(ok, "{err}");
    produce(&broker, "orders", 0..90).await;
    let a = member(&broker, "my-app3", "orders");
    let b = member(&broker, "my-app3", "orders");
    let c = member(&broker, "my-app3", "orders");
    let received = poll_until(&[&a, &b, &c], 90);
    let partitions: Vec<BTreeSet<i32>> = received
        .iter()
        .map(|messages| messages.iter().map(|(p, _)| *p).collect())
        .collect();
    assert!(
        partitions.iter().all(|set| set.len() == 1),
        "one partition each: {partitions:?}"
    );
    let all: BTreeSet<i32> = partitions.iter().flatten().copied().collect();
    assert_eq!(all.len(), 3, "three different partitions: {partitions:?}");
    let values: BTreeSet<String> = received.iter().flatten().map(|(_, v)| v.clone()).collect();
    assert_eq!(values.len(), 90, "every message once");
    for consumer in [&a, &b, &c] {
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .expect("commit");
    }
    // c leaves; once a and b have taken over all three partitions, new messages reach them
    // exactly once, c's partition continuing from c's committed offset.
    let c_partition = *partitions[2].iter().next().unwrap();
    drop(c);
    let deadline = Instant::now() + TIMEOUT;
    let mut settled_since: Option<Instant> = None;
    loop {
        for consumer in [&a, &b] {
            assert!(
                consumer.poll(Duration::from_millis(50)).is_none(),
                "nothing new to read yet"
            );
        }
        // Settled: the two survivors have held all three partitions for a second.
        let assigned = a.assignment().unwrap().count() + b.assignment().unwrap().count();
        match (assigned == 3, settled_since) {
            (true, Some(since)) if since.elapsed() > Duration::from_secs(1) => break,
            (true, None) => settled_since = Some(Instant::now()),
            (false, _) => settled_since = None,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "the survivors never took over c's partition"
        );
    }
    produce(&broker, "orders", 90..120).await;
    let after = poll_until(&[&a, &b], 30);
    let values: Vec<String> = after.iter().flatten().map(|(_, v)| v.clone()).collect();
    let distinct: BTreeSet<String> = values.iter().cloned().collect();
    let expected: BTreeSet<String> = (90..120).map(|i| format!("message {i}")).collect();
    assert_eq!(
        distinct, expected,
        "only the new messages: nothing committed is delivered again"
    );
    assert_eq!(values.len(), 30, "each once");
    let moved = after.iter().flatten().any(|(p, _)| *p == c_partition);
    assert!(
        moved,
        "partition {c_partition} of the member that left was taken over"
    );
}

#[tokio::test]
async fn two_groups_each_receive_every_message() {
    let broker = BrokerProcess::start_with(2, GROUP_FLAGS);
    let (ok, _, err) = broker.cli(&["topic", "create", "news", "--partitions", "2"], "");
    assert!(ok, "{err}");
    produce(&broker, "news", 0..40).await;
    let email = member(&broker, "email", "news");
    let phone = member(&broker, "phone", "news");
    let mut by_group: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let received = poll_until(&[&email, &phone], 80);
    by_group.insert(
        "email",
        received[0].iter().map(|(_, v)| v.clone()).collect(),
    );
    by_group.insert(
        "phone",
        received[1].iter().map(|(_, v)| v.clone()).collect(),
    );
    let expected: BTreeSet<String> = (0..40).map(|i| format!("message {i}")).collect();
    assert_eq!(by_group["email"], expected);
    assert_eq!(by_group["phone"], expected);
}
