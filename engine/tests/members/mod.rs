//! librdkafka consumer group members for tests: in this process or (confluent-kafka) in a
//! process of their own that can be killed, waiting for an assignment to settle, and checking
//! that every message reached exactly one member, per key in order.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A librdkafka member of `group` subscribed to `topic`, committing only when told to.
pub fn member(bootstrap: &str, group: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
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

/// The next message of `consumer` within `timeout` as (partition, value, offset). A lost
/// connection to a broker (one a test killed) is reported by librdkafka as an error event
/// and passed over; any other error fails the test.
pub fn next_message(consumer: &BaseConsumer, timeout: Duration) -> Option<(i32, String, i64)> {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;
    match consumer.poll(timeout)? {
        Ok(message) => Some((
            message.partition(),
            String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            message.offset(),
        )),
        Err(KafkaError::MessageConsumption(
            code @ (RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown),
        )) => {
            eprintln!("consumer: {code:?} (a broker went away)");
            None
        }
        Err(error) => panic!("consumer error: {error}"),
    }
}

/// Polls every member until `count` messages arrived in total; returns each member's
/// (partition, value) list.
pub fn poll_until(members: &[&BaseConsumer], count: usize) -> Vec<Vec<(i32, String)>> {
    let mut received: Vec<Vec<(i32, String)>> = vec![Vec::new(); members.len()];
    let deadline = Instant::now() + TIMEOUT;
    while received.iter().map(Vec::len).sum::<usize>() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} messages",
            received.iter().map(Vec::len).sum::<usize>()
        );
        for (at, consumer) in members.iter().enumerate() {
            if let Some((partition, value, _)) = next_message(consumer, Duration::from_millis(50)) {
                received[at].push((partition, value));
            }
        }
    }
    received
}

/// Waits until every member holds a stable assignment (the same for a second) covering
/// `partitions` in total; returns each member's partitions.
pub fn settled_assignment(members: &[&BaseConsumer], partitions: usize) -> Vec<BTreeSet<i32>> {
    let deadline = Instant::now() + TIMEOUT;
    let mut last: Vec<BTreeSet<i32>> = Vec::new();
    let mut since = Instant::now();
    loop {
        for consumer in members {
            if let Some((partition, value, offset)) =
                next_message(consumer, Duration::from_millis(50))
            {
                panic!("no messages expected while settling: {value} at {partition}-{offset}");
            }
        }
        let now: Vec<BTreeSet<i32>> = members
            .iter()
            .map(|c| {
                c.assignment()
                    .unwrap()
                    .elements()
                    .iter()
                    .map(|e| e.partition())
                    .collect()
            })
            .collect();
        if now != last {
            last = now;
            since = Instant::now();
        }
        let total: usize = last.iter().map(BTreeSet::len).sum();
        if total == partitions && since.elapsed() > Duration::from_secs(1) {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "assignment never settled: {last:?}"
        );
    }
}

/// Each member got exactly the messages of the partitions it holds, every message once, and
/// per key in production order.
pub fn assert_delivery(
    received: &[Vec<(i32, String)>],
    held: &[BTreeSet<i32>],
    range: std::ops::Range<usize>,
) {
    let mut all: Vec<String> = received.iter().flatten().map(|(_, v)| v.clone()).collect();
    all.sort();
    let mut expected: Vec<String> = range.map(|i| format!("message {i}")).collect();
    expected.sort();
    assert_eq!(all, expected, "every message exactly once");
    assert_only_held(received, held);
    // Keys: one consumer each, in order.
    let mut owner: BTreeMap<usize, usize> = BTreeMap::new();
    let mut last_seen: BTreeMap<usize, usize> = BTreeMap::new();
    for (at, messages) in received.iter().enumerate() {
        for (_, value) in messages {
            let i: usize = value.trim_start_matches("message ").parse().unwrap();
            let key = i % 9;
            assert_eq!(
                *owner.entry(key).or_insert(at),
                at,
                "key-{key} reached two consumers"
            );
            if let Some(previous) = last_seen.insert(key, i) {
                assert!(previous < i, "key-{key}: message {i} after {previous}");
            }
        }
    }
}

/// Each member's messages came from the partitions it holds.
pub fn assert_only_held(received: &[Vec<(i32, String)>], held: &[BTreeSet<i32>]) {
    for (messages, partitions) in received.iter().zip(held) {
        for (partition, value) in messages {
            assert!(
                partitions.contains(partition),
                "{value} from {partition}, held {partitions:?}"
            );
        }
    }
}

/// A librdkafka group member in its own process (confluent-kafka, auto-committing every
/// 100 ms), so it can be killed outright; its messages arrive on `messages` as
/// (partition, value). Killed when dropped, so a failing test leaves no member running.
pub struct MemberProcess {
    child: std::process::Child,
    pub messages: std::sync::mpsc::Receiver<(i32, String)>,
}

impl MemberProcess {
    /// Kills the member (SIGKILL: no LeaveGroup, no last commit) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MemberProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn process_member(bootstrap: &str, group: &str, topic: &str) -> MemberProcess {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/group_member.py");
    let mut child = Command::new("python3")
        .args([script, bootstrap, group, topic])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with confluent-kafka (scripts/test installs it)");
    let stdout = child.stdout.take().unwrap();
    let (sender, messages) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some((partition, value)) = line.split_once(' ') {
                let _ = sender.send((partition.parse().unwrap(), value.to_string()));
            }
        }
    });
    MemberProcess { child, messages }
}
