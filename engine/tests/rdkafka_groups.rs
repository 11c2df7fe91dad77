//! Consumer groups with librdkafka: partitions spread across members, every message
//! delivered once, committed offsets honoured when a member leaves, pub-sub across groups.

mod broker;
mod members;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use broker::BrokerProcess;
use members::{assert_delivery, member, poll_until, process_member, settled_assignment, TIMEOUT};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

const GROUP_FLAGS: &[&str] = &[
    "--group-min-session-timeout-ms",
    "100",
    "--group-initial-rebalance-delay-ms",
    "500",
];

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

#[tokio::test]
async fn three_members_share_three_partitions_and_a_leaver_hands_over_at_its_commit() {
    let broker = BrokerProcess::start_with(2, GROUP_FLAGS);
    let (ok, _, err) = broker.cli(&["topic", "create", "orders", "--partitions", "3"], "");
    assert!(ok, "{err}");
    produce(&broker, "orders", 0..90).await;
    let a = member(&broker.address, "my-app3", "orders");
    let b = member(&broker.address, "my-app3", "orders");
    let c = member(&broker.address, "my-app3", "orders");
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
    let email = member(&broker.address, "email", "news");
    let phone = member(&broker.address, "phone", "news");
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

#[tokio::test]
async fn four_partitions_three_members_one_holds_two_and_two_partitions_leave_one_idle() {
    let broker = BrokerProcess::start_with(2, GROUP_FLAGS);
    for (topic, partitions) in [("quad", "4"), ("pair", "2")] {
        let (ok, _, err) = broker.cli(&["topic", "create", topic, "--partitions", partitions], "");
        assert!(ok, "{err}");
    }
    // Four partitions, three members.
    let members: Vec<BaseConsumer> = (0..3)
        .map(|_| member(&broker.address, "quad-app", "quad"))
        .collect();
    let refs: Vec<&BaseConsumer> = members.iter().collect();
    let held = settled_assignment(&refs, 4);
    let mut sizes: Vec<usize> = held.iter().map(BTreeSet::len).collect();
    sizes.sort();
    assert_eq!(sizes, vec![1, 1, 2], "{held:?}");
    produce(&broker, "quad", 0..120).await;
    let received = poll_until(&refs, 120);
    assert_delivery(&received, &held, 0..120);
    // Two partitions, three members: one idles.
    let members: Vec<BaseConsumer> = (0..3)
        .map(|_| member(&broker.address, "pair-app", "pair"))
        .collect();
    let refs: Vec<&BaseConsumer> = members.iter().collect();
    let held = settled_assignment(&refs, 2);
    let mut sizes: Vec<usize> = held.iter().map(BTreeSet::len).collect();
    sizes.sort();
    assert_eq!(sizes, vec![0, 1, 1], "{held:?}");
    produce(&broker, "pair", 0..60).await;
    let received = poll_until(&refs, 60);
    assert_delivery(&received, &held, 0..60);
    let idle = held.iter().position(BTreeSet::is_empty).unwrap();
    assert!(
        received[idle].is_empty(),
        "the idle member received nothing"
    );
}

#[tokio::test]
async fn a_killed_member_hands_over_within_its_session_and_a_new_one_spreads_the_load() {
    let broker = BrokerProcess::start_with(2, GROUP_FLAGS);
    let (ok, _, err) = broker.cli(&["topic", "create", "spread", "--partitions", "3"], "");
    assert!(ok, "{err}");
    let a = member(&broker.address, "my-app3", "spread");
    let b = member(&broker.address, "my-app3", "spread");
    let mut c = process_member(&broker.address, "my-app3", "spread");
    // a and b hold one partition each: c (another process) holds the third.
    let held = settled_assignment(&[&a, &b], 2);
    assert!(held.iter().all(|p| p.len() == 1), "{held:?}");
    let c_partition = (0..3)
        .find(|p| !held.iter().any(|h| h.contains(p)))
        .unwrap();
    produce(&broker, "spread", 0..30).await;
    let mut received: Vec<Vec<(i32, String)>> = vec![Vec::new(), Vec::new()];
    let deadline = Instant::now() + TIMEOUT;
    let mut by_c = Vec::new();
    while received.iter().map(Vec::len).sum::<usize>() + by_c.len() < 30 {
        assert!(Instant::now() < deadline, "c got {} messages", by_c.len());
        if let Ok(message) = c.messages.recv_timeout(Duration::from_millis(50)) {
            by_c.push(message);
        }
        for (at, consumer) in [&a, &b].iter().enumerate() {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(10)) {
                let value = String::from_utf8_lossy(message.payload().unwrap()).into_owned();
                received[at].push((message.partition(), value));
            }
        }
    }
    let read_by_c = by_c.len() as i64;
    received.push(by_c);
    let mut held_all = held.clone();
    held_all.push(BTreeSet::from([c_partition]));
    assert_delivery(&received, &held_all, 0..30);
    for consumer in [&a, &b] {
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .expect("commit");
    }
    // c auto-commits every 100 ms: once its commit covers what it read, kill it: no
    // LeaveGroup, so its partition moves only when its 2 s session runs out.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut wanted = rdkafka::TopicPartitionList::new();
        wanted.add_partition("spread", c_partition);
        let committed = a
            .committed_offsets(wanted, Duration::from_secs(5))
            .expect("committed offsets");
        let offset = committed
            .find_partition("spread", c_partition)
            .map(|partition| partition.offset());
        if offset == Some(rdkafka::Offset::Offset(read_by_c)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "c's commit is at {offset:?}, it read {read_by_c}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.kill();
    let killed_at = Instant::now();
    let held = settled_assignment(&[&a, &b], 3);
    assert!(
        killed_at.elapsed() < Duration::from_secs(8),
        "took over {:?} after the kill",
        killed_at.elapsed()
    );
    produce(&broker, "spread", 30..60).await;
    let received = poll_until(&[&a, &b], 30);
    assert_delivery(&received, &held, 30..60);
    for consumer in [&a, &b] {
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .expect("commit");
    }
    // A new member arrives: one partition each again, from the committed offsets.
    let c = member(&broker.address, "my-app3", "spread");
    let held = settled_assignment(&[&a, &b, &c], 3);
    assert!(held.iter().all(|p| p.len() == 1), "spread back: {held:?}");
    produce(&broker, "spread", 60..90).await;
    let received = poll_until(&[&a, &b, &c], 30);
    assert_delivery(&received, &held, 60..90);
}

#[tokio::test]
async fn after_a_broker_restart_every_group_resumes_from_its_commits() {
    use rdkafka::{Offset, TopicPartitionList};
    let mut broker = BrokerProcess::start_with(2, GROUP_FLAGS);
    let (ok, _, err) = broker.cli(&["topic", "create", "resume", "--partitions", "2"], "");
    assert!(ok, "{err}");
    produce(&broker, "resume", 0..60).await;
    // "half" commits the middle of each partition, "all" commits everything.
    let mut commit_points: BTreeMap<i32, i64> = BTreeMap::new();
    let mut after_commit: BTreeSet<String> = BTreeSet::new();
    for group in ["half", "all"] {
        let consumer = member(&broker.address, group, "resume");
        let mut got: Vec<(i32, i64, String)> = Vec::new();
        let deadline = Instant::now() + TIMEOUT;
        while got.len() < 60 {
            assert!(Instant::now() < deadline, "{group}: {} of 60", got.len());
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.unwrap();
                let value = String::from_utf8_lossy(message.payload().unwrap()).into_owned();
                got.push((message.partition(), message.offset(), value));
            }
        }
        let mut commits = TopicPartitionList::new();
        for partition in 0..2 {
            let ends = got.iter().filter(|(p, _, _)| *p == partition).count() as i64;
            let point = if group == "half" { ends / 2 } else { ends };
            commits
                .add_partition_offset("resume", partition, Offset::Offset(point))
                .unwrap();
            if group == "half" {
                commit_points.insert(partition, point);
            }
        }
        consumer.commit(&commits, CommitMode::Sync).expect("commit");
        if group == "half" {
            after_commit = got
                .iter()
                .filter(|(p, o, _)| *o >= commit_points[p])
                .map(|(_, _, v)| v.clone())
                .collect();
        }
        drop(consumer);
    }
    broker.kill_and_restart();
    produce(&broker, "resume", 60..70).await;
    let new: BTreeSet<String> = (60..70).map(|i| format!("message {i}")).collect();
    for (group, expected) in [
        (
            "half",
            after_commit.union(&new).cloned().collect::<BTreeSet<_>>(),
        ),
        ("all", new.clone()),
    ] {
        let consumer = member(&broker.address, group, "resume");
        let received = poll_until(&[&consumer], expected.len());
        let values: Vec<String> = received[0].iter().map(|(_, v)| v.clone()).collect();
        let distinct: BTreeSet<String> = values.iter().cloned().collect();
        assert_eq!(values.len(), distinct.len(), "{group}: nothing twice");
        assert_eq!(
            distinct, expected,
            "{group}: nothing committed again, nothing uncommitted skipped"
        );
        assert!(
            consumer.poll(Duration::from_millis(500)).is_none(),
            "{group}: nothing more"
        );
    }
}
