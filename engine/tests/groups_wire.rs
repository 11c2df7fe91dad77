//! Consumer groups on the wire with the protocol crate's client: group admin (ListGroups,
//! DescribeGroups, DeleteGroups, OffsetDelete and the `ringlog group` CLI), static
//! membership, members that never sync, concurrent joins, and bad input, each answered with
//! its Kafka error while other groups carry on.

mod broker;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use broker::BrokerProcess;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use protocol::client::Client;
use protocol::ErrorCode;

const FLAGS: &[&str] = &[
    "--group-min-session-timeout-ms",
    "100",
    "--group-max-session-timeout-ms",
    "60000",
    "--group-initial-rebalance-delay-ms",
    "300",
    "--group-max-size",
    "50",
];

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn group_id(name: &str) -> GroupId {
    GroupId(text(name))
}

/// A consumer protocol subscription (version 0) to `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let body = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| text(t)).collect());
    let mut bytes = BytesMut::new();
    bytes.put_i16(0);
    body.encode(&mut bytes, 0).unwrap();
    bytes.freeze()
}

/// A consumer protocol assignment (version 0) of `partitions` of `topic`.
fn assignment(topic: &str, partitions: &[i32]) -> Bytes {
    let body = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        TopicPartition::default()
            .with_topic(TopicName(text(topic)))
            .with_partitions(partitions.to_vec()),
    ]);
    let mut bytes = BytesMut::new();
    bytes.put_i16(0);
    body.encode(&mut bytes, 0).unwrap();
    bytes.freeze()
}

/// One group member speaking the protocol by hand, on its own connection.
struct Member {
    client: Client,
    group: String,
    instance: Option<String>,
    id: String,
    generation: i32,
    leader: bool,
    /// The other members' ids, when this member leads.
    roster: Vec<String>,
}

impl Member {
    async fn new(broker: &BrokerProcess, group: &str, client_id: &str) -> Member {
        Member {
            client: Client::connect(&broker.address, client_id).await.unwrap(),
            group: group.to_string(),
            instance: None,
            id: String::new(),
            generation: -1,
            leader: false,
            roster: Vec::new(),
        }
    }

    fn join_request(
        &self,
        session_ms: i32,
        rebalance_ms: i32,
        topics: &[&str],
    ) -> JoinGroupRequest {
        JoinGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_member_id(text(&self.id))
            .with_group_instance_id(self.instance.as_deref().map(text))
            .with_session_timeout_ms(session_ms)
            .with_rebalance_timeout_ms(rebalance_ms)
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(subscription(topics))])
    }

    /// Joins (fetching a member id first when asked to); returns the error code.
    async fn join(&mut self, session_ms: i32, rebalance_ms: i32, topics: &[&str]) -> i16 {
        loop {
            let request = self.join_request(session_ms, rebalance_ms, topics);
            let response = self.client.send_version(&request, 7).await.unwrap();
            if response.error_code == ErrorCode::MemberIdRequired.code() {
                self.id = response.member_id.to_string();
                continue;
            }
            if response.error_code == 0 {
                self.id = response.member_id.to_string();
                self.generation = response.generation_id;
                self.leader = response.leader == response.member_id;
                self.roster = response
                    .members
                    .iter()
                    .map(|m| m.member_id.to_string())
                    .collect();
            }
            return response.error_code;
        }
    }

    /// SyncGroup; a leader hands each member the assignment `plan` gives it.
    async fn sync(&mut self, plan: impl Fn(usize, &str) -> Bytes) -> (i16, Bytes) {
        let assignments = if self.leader {
            self.roster
                .iter()
                .enumerate()
                .map(|(at, id)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(text(id))
                        .with_assignment(plan(at, id))
                })
                .collect()
        } else {
            Vec::new()
        };
        let request = SyncGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id(self.generation)
            .with_member_id(text(&self.id))
            .with_group_instance_id(self.instance.as_deref().map(text))
            .with_assignments(assignments);
        let response = self.client.send_version(&request, 4).await.unwrap();
        (response.error_code, response.assignment)
    }

    async fn heartbeat(&mut self) -> i16 {
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id(self.generation)
            .with_member_id(text(&self.id))
            .with_group_instance_id(self.instance.as_deref().map(text));
        self.client
            .send_version(&request, 4)
            .await
            .unwrap()
            .error_code
    }

    async fn commit(&mut self, topic: &str, offsets: &[(i32, i64)]) -> Vec<i16> {
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id_or_member_epoch(self.generation)
            .with_member_id(text(&self.id))
            .with_group_instance_id(self.instance.as_deref().map(text))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(text(topic)))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                        })
                        .collect(),
                )]);
        let response = self.client.send_version(&request, 8).await.unwrap();
        response.topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect()
    }

    async fn leave(&mut self) -> i16 {
        let request = LeaveGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_members(vec![MemberIdentity::default()
                .with_member_id(text(&self.id))
                .with_group_instance_id(self.instance.as_deref().map(text))]);
        let response = self.client.send_version(&request, 4).await.unwrap();
        response.members[0].error_code
    }
}

/// Joins and syncs `members` (joins concurrently, within the initial rebalance delay, so
/// they form one generation); the leader assigns
/// partition `i` of `topic` to the i-th member.
async fn form_group(members: &mut [Member], topic: &str) {
    let topics = [topic];
    let joins = members.iter_mut().map(|m| m.join(10_000, 10_000, &topics));
    for code in futures_util::future::join_all(joins).await {
        assert_eq!(code, 0);
    }
    let syncs = members
        .iter_mut()
        .map(|m| m.sync(|at, _| assignment(topic, &[at as i32])));
    for (code, _) in futures_util::future::join_all(syncs).await {
        assert_eq!(code, 0);
    }
}

async fn describe(
    client: &mut Client,
    group: &str,
) -> kafka_protocol::messages::describe_groups_response::DescribedGroup {
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    client
        .send_version(&request, 5)
        .await
        .unwrap()
        .groups
        .remove(0)
}

async fn committed(client: &mut Client, group: &str, topic: &str, partitions: &[i32]) -> Vec<i64> {
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(text(topic)))
            .with_partition_indexes(partitions.to_vec())]));
    let response = client.send_version(&request, 7).await.unwrap();
    response.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect()
}

async fn list(client: &mut Client, states: &[&str]) -> Vec<(String, String)> {
    let request =
        ListGroupsRequest::default().with_states_filter(states.iter().map(|s| text(s)).collect());
    let response = client.send_version(&request, 4).await.unwrap();
    assert_eq!(response.error_code, 0);
    response
        .groups
        .iter()
        .map(|g| (g.group_id.0.to_string(), g.group_state.to_string()))
        .collect()
}

#[tokio::test]
async fn group_admin_lists_describes_deletes_and_resets() {
    let mut broker = BrokerProcess::start_with(2, FLAGS);
    let (ok, _, err) = broker.cli(&["topic", "create", "ledger", "--partitions", "2"], "");
    assert!(ok, "{err}");
    let (ok, _, err) = broker.cli(&["produce", "ledger", "-p", "0"], "a\nb\nc\nd\n");
    assert!(ok, "{err}");
    let mut admin = Client::connect(&broker.address, "admin").await.unwrap();
    let mut members = vec![
        Member::new(&broker, "billing", "billing-a").await,
        Member::new(&broker, "billing", "billing-b").await,
    ];
    form_group(&mut members, "ledger").await;
    assert_eq!(members[0].commit("ledger", &[(0, 3)]).await, vec![0]);

    assert!(list(&mut admin, &[])
        .await
        .contains(&("billing".into(), "Stable".into())));
    assert!(!list(&mut admin, &["Empty"])
        .await
        .iter()
        .any(|(g, _)| g == "billing"));
    let described = describe(&mut admin, "billing").await;
    assert_eq!(described.error_code, 0);
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.protocol_type.as_str(), "consumer");
    assert_eq!(described.protocol_data.as_str(), "range");
    let clients: BTreeSet<String> = described
        .members
        .iter()
        .map(|m| m.client_id.to_string())
        .collect();
    assert_eq!(
        clients,
        BTreeSet::from(["billing-a".into(), "billing-b".into()])
    );
    assert!(described
        .members
        .iter()
        .all(|m| m.client_host.as_str() == "/127.0.0.1"));
    assert!(described
        .members
        .iter()
        .all(|m| !m.member_assignment.is_empty()));

    let (ok, out, err) = broker.cli(&["group", "describe", "billing"], "");
    assert!(ok, "{err}");
    assert!(
        out.contains("STATE Stable") && out.contains("MEMBERS 2"),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.starts_with("ledger") && l.split_whitespace().nth(1) == Some("0"))
        .unwrap_or_else(|| panic!("partition 0 row: {out}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[1..5],
        &["0", "3", "4", "1"],
        "current 3, end 4, lag 1: {row}"
    );
    assert!(row.contains("/127.0.0.1"), "{row}");

    // With members: deleting and resetting are refused.
    let delete = DeleteGroupsRequest::default().with_groups_names(vec![group_id("billing")]);
    let response = admin.send_version(&delete, 2).await.unwrap();
    assert_eq!(
        response.results[0].error_code,
        ErrorCode::NonEmptyGroup.code()
    );
    let (ok, _, err) = broker.cli(
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "ledger",
            "--to-earliest",
        ],
        "",
    );
    assert!(!ok && err.contains("2 active member"), "{err}");
    let offset_delete = OffsetDeleteRequest::default()
        .with_group_id(group_id("billing"))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(TopicName(text("ledger")))
            .with_partitions(vec![
                OffsetDeleteRequestPartition::default().with_partition_index(0)
            ])]);
    let response = admin.send(&offset_delete).await.unwrap();
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        ErrorCode::GroupSubscribedToTopic.code()
    );

    for member in members.iter_mut() {
        assert_eq!(member.leave().await, 0);
    }
    let described = describe(&mut admin, "billing").await;
    assert_eq!(described.group_state.as_str(), "Empty");
    assert!(described.members.is_empty());

    // Empty: reset to a time, to an offset (kept in range), to latest.
    let (ok, out, err) = broker.cli(
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "ledger",
            "--to-offset",
            "99",
        ],
        "",
    );
    assert!(ok, "{err}");
    assert!(out.contains("reset the offsets"), "{out}");
    assert_eq!(
        committed(&mut admin, "billing", "ledger", &[0, 1]).await,
        vec![4, 0]
    );
    let (ok, _, err) = broker.cli(
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "ledger",
            "--to-datetime",
            "1970-01-01T00:00:00Z",
        ],
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(
        committed(&mut admin, "billing", "ledger", &[0, 1]).await,
        vec![0, 0]
    );
    let (ok, _, err) = broker.cli(
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "ledger",
            "--to-datetime",
            "yesterday",
        ],
        "",
    );
    assert!(!ok && err.contains("RFC 3339"), "{err}");
    let (ok, _, err) = broker.cli(
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "ledger",
            "--to-latest",
        ],
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(
        committed(&mut admin, "billing", "ledger", &[0, 1]).await,
        vec![4, 0]
    );

    // OffsetDelete of one partition, then the group itself; both survive a restart.
    let response = admin.send(&offset_delete).await.unwrap();
    assert_eq!(
        (
            response.error_code,
            response.topics[0].partitions[0].error_code
        ),
        (0, 0)
    );
    assert_eq!(
        committed(&mut admin, "billing", "ledger", &[0, 1]).await,
        vec![-1, 0]
    );
    let (ok, out, err) = broker.cli(&["group", "list"], "");
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("billing") && l.contains("Empty")),
        "{out}"
    );
    let (ok, _, err) = broker.cli(&["group", "delete", "billing"], "");
    assert!(ok, "{err}");
    let described = describe(&mut admin, "billing").await;
    assert_eq!(described.group_state.as_str(), "Dead");
    let (ok, _, err) = broker.cli(&["group", "delete", "billing"], "");
    assert!(!ok && err.contains("GroupIdNotFound"), "{err}");
    let (ok, _, err) = broker.cli(&["group", "describe", "billing"], "");
    assert!(!ok && err.contains("does not exist"), "{err}");

    // A second group's offsets on a topic that is then deleted go with the topic.
    let mut other = Member::new(&broker, "audit", "audit").await;
    other.generation = -1;
    assert_eq!(other.commit("ledger", &[(1, 0)]).await, vec![0]);
    broker.kill_and_restart();
    let mut admin = Client::connect(&broker.address, "admin").await.unwrap();
    assert!(!list(&mut admin, &[])
        .await
        .iter()
        .any(|(g, _)| g == "billing"));
    assert_eq!(
        committed(&mut admin, "audit", "ledger", &[1]).await,
        vec![0]
    );
    let (ok, _, err) = broker.cli(&["topic", "delete", "ledger"], "");
    assert!(ok, "{err}");
    assert_eq!(
        committed(&mut admin, "audit", "ledger", &[1]).await,
        vec![-1]
    );
    broker.kill_and_restart();
    let mut admin = Client::connect(&broker.address, "admin").await.unwrap();
    assert_eq!(
        committed(&mut admin, "audit", "ledger", &[1]).await,
        vec![-1]
    );
}

#[tokio::test]
async fn static_members_keep_their_place_and_their_old_ids_are_fenced() {
    let broker = BrokerProcess::start_with(1, FLAGS);
    let (ok, _, err) = broker.cli(&["topic", "create", "t", "--partitions", "2"], "");
    assert!(ok, "{err}");
    let mut members = vec![
        Member::new(&broker, "static", "a").await,
        Member::new(&broker, "static", "b").await,
    ];
    members[0].instance = Some("host-a".into());
    members[1].instance = Some("host-b".into());
    // a joins first and leads.
    assert_eq!(members[0].join(10_000, 10_000, &["t"]).await, 0);
    assert_eq!(members[0].sync(|_, _| assignment("t", &[0])).await.0, 0);
    assert_eq!(members[0].heartbeat().await, 0);
    let mut b = members.pop().unwrap();
    let mut a = members.pop().unwrap();
    let (joined_b, rejoined_a) = tokio::join!(b.join(10_000, 10_000, &["t"]), async {
        // Once b's join reaches the coordinator, a's heartbeat is told to rejoin.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let code = a.heartbeat().await;
            if code == ErrorCode::RebalanceInProgress.code() {
                break;
            }
            assert_eq!(code, 0, "a stays a member until b's join arrives");
            assert!(std::time::Instant::now() < deadline, "no rebalance began");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        a.join(10_000, 10_000, &["t"]).await
    });
    assert_eq!((joined_b, rejoined_a), (0, 0));
    let plan = |at: usize, _: &str| assignment("t", &[at as i32]);
    let ((code_a, _), (code_b, assigned_b)) = tokio::join!(a.sync(plan), b.sync(plan));
    assert_eq!((code_a, code_b), (0, 0));
    let generation = a.generation;

    // b restarts: same instance id, no member id. It gets a new id and its assignment back
    // without a rebalance; the id it had is fenced.
    let old_b = b.id.clone();
    let mut b2 = Member::new(&broker, "static", "b").await;
    b2.instance = Some("host-b".into());
    assert_eq!(b2.join(10_000, 10_000, &["t"]).await, 0);
    assert_ne!(b2.id, old_b);
    assert_eq!(
        b2.generation, generation,
        "no rebalance for a returning static member"
    );
    let (code, assigned) = b2.sync(plan).await;
    assert_eq!((code, assigned), (0, assigned_b));
    assert_eq!(b.heartbeat().await, ErrorCode::FencedInstanceId.code());
    assert_eq!(
        b.commit("t", &[(1, 5)]).await,
        vec![ErrorCode::FencedInstanceId.code()]
    );
    assert_eq!(a.heartbeat().await, 0, "a saw no rebalance");
    assert_eq!(b2.heartbeat().await, 0);
    // Leaving by instance id.
    assert_eq!(b.leave().await, ErrorCode::FencedInstanceId.code());
    assert_eq!(b2.leave().await, 0);
    assert_eq!(a.heartbeat().await, ErrorCode::RebalanceInProgress.code());
}

#[tokio::test]
async fn a_member_that_never_syncs_is_removed_after_the_rebalance_timeout() {
    let broker = BrokerProcess::start_with(1, FLAGS);
    let mut a = Member::new(&broker, "slow", "a").await;
    let mut b = Member::new(&broker, "slow", "b").await;
    let (ja, jb) = tokio::join!(a.join(10_000, 1_000, &["t"]), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        b.join(10_000, 1_000, &["t"]).await
    });
    assert_eq!((ja, jb), (0, 0));
    let leader = if a.leader { &mut a } else { &mut b };
    assert_eq!(leader.sync(|_, _| assignment("t", &[0])).await.0, 0);
    let (leader, idle) = if a.leader {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    // The idle member heartbeats (so its session stays alive) but never syncs.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "the member that never synced was never removed"
        );
        let _ = idle.heartbeat().await;
        if leader.heartbeat().await == ErrorCode::RebalanceInProgress.code() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(leader.join(10_000, 1_000, &["t"]).await, 0);
    assert_eq!(
        leader.roster,
        vec![leader.id.clone()],
        "the group is the leader alone"
    );
    assert_eq!(idle.heartbeat().await, ErrorCode::UnknownMemberId.code());
}

#[tokio::test]
async fn concurrent_joins_during_a_rebalance_converge() {
    let broker = BrokerProcess::start_with(2, FLAGS);
    let members = 8;
    let mut tasks = Vec::new();
    for n in 0..members {
        let address = broker.address.clone();
        tasks.push(tokio::spawn(async move {
            // Half join at once, the rest one by one while rebalances are under way.
            if n >= members / 2 {
                tokio::time::sleep(Duration::from_millis(150 * n as u64)).await;
            }
            let mut member = Member {
                client: Client::connect(&address, &format!("m{n}")).await.unwrap(),
                group: "crowd".into(),
                instance: None,
                id: String::new(),
                generation: -1,
                leader: false,
                roster: Vec::new(),
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut stable_since: Option<Instant> = None;
            loop {
                assert!(Instant::now() < deadline, "member {n} never settled");
                let code = member.join(5_000, 5_000, &["t"]).await;
                if code != 0 {
                    assert_eq!(code, ErrorCode::UnknownMemberId.code(), "join of {n}");
                    member.id.clear();
                    continue;
                }
                let (code, assignment) = member
                    .sync(|_, id| Bytes::copy_from_slice(id.as_bytes()))
                    .await;
                if code == ErrorCode::RebalanceInProgress.code() {
                    continue;
                }
                assert_eq!(code, 0, "sync of {n}");
                let assigned = assignment;
                // Heartbeat until a rebalance starts or the group stays quiet for 1.5 s.
                loop {
                    match member.heartbeat().await {
                        0 => {
                            let since = *stable_since.get_or_insert_with(Instant::now);
                            if since.elapsed() > Duration::from_millis(1500) {
                                return (member.id, member.generation, assigned.clone());
                            }
                        }
                        code => {
                            assert_eq!(
                                code,
                                ErrorCode::RebalanceInProgress.code(),
                                "heartbeat of {n}"
                            );
                            stable_since = None;
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    let mut settled = Vec::new();
    for task in tasks {
        settled.push(task.await.unwrap());
    }
    let generations: BTreeSet<i32> = settled.iter().map(|(_, g, _)| *g).collect();
    assert_eq!(generations.len(), 1, "one generation for all: {settled:?}");
    for (id, _, assigned) in &settled {
        assert_eq!(
            assigned.as_ref(),
            id.as_bytes(),
            "each member got its own assignment"
        );
    }
    let mut admin = Client::connect(&broker.address, "admin").await.unwrap();
    let described = describe(&mut admin, "crowd").await;
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.members.len(), members);
}

#[tokio::test]
async fn bad_group_input_gets_its_kafka_error_and_other_groups_carry_on() {
    let broker = BrokerProcess::start_with(2, FLAGS);
    let (ok, _, err) = broker.cli(&["topic", "create", "t"], "");
    assert!(ok, "{err}");
    let mut client = Client::connect(&broker.address, "bad").await.unwrap();

    // A heartbeat for a group nobody joined.
    let beat = HeartbeatRequest::default()
        .with_group_id(group_id("nobody"))
        .with_generation_id(1)
        .with_member_id(text("ghost"));
    assert_eq!(
        client.send_version(&beat, 4).await.unwrap().error_code,
        ErrorCode::UnknownMemberId.code()
    );

    // Session timeouts outside [100 ms, 60 s].
    let mut member = Member::new(&broker, "timeouts", "m").await;
    for session in [10, 60_001, -1] {
        let request = member.join_request(session, 10_000, &["t"]);
        let response = member.client.send_version(&request, 7).await.unwrap();
        assert_eq!(
            response.error_code,
            ErrorCode::InvalidSessionTimeout.code(),
            "session {session}"
        );
    }
    // No protocols at all.
    let request = member
        .join_request(10_000, 10_000, &["t"])
        .with_protocols(vec![]);
    let response = member.client.send_version(&request, 7).await.unwrap();
    assert_eq!(
        response.error_code,
        ErrorCode::InconsistentGroupProtocol.code()
    );

    // Commits from an unknown member and from an old generation; a sync with a wrong one.
    assert_eq!(member.join(10_000, 10_000, &["t"]).await, 0);
    assert_eq!(member.sync(|_, _| Bytes::new()).await.0, 0);
    let real = (member.id.clone(), member.generation);
    member.id = "impostor".into();
    assert_eq!(
        member.commit("t", &[(0, 1)]).await,
        vec![ErrorCode::UnknownMemberId.code()]
    );
    member.id = real.0.clone();
    member.generation = real.1 - 1;
    assert_eq!(
        member.commit("t", &[(0, 1)]).await,
        vec![ErrorCode::IllegalGeneration.code()]
    );
    assert_eq!(
        member.sync(|_, _| Bytes::new()).await.0,
        ErrorCode::IllegalGeneration.code()
    );
    assert_eq!(
        member.heartbeat().await,
        ErrorCode::IllegalGeneration.code()
    );
    member.generation = real.1;
    assert_eq!(
        member.commit("missing-topic", &[(0, 1)]).await,
        vec![ErrorCode::UnknownTopicOrPartition.code()]
    );
    assert_eq!(member.commit("t", &[(0, 1)]).await, vec![0]);
    // A standalone or admin commit (generation -1, no member id) into a group with members
    // is refused as Kafka refuses it: not a member.
    let mut standalone = Member::new(&broker, "timeouts", "s").await;
    assert_eq!(
        standalone.commit("t", &[(0, 9)]).await,
        vec![ErrorCode::UnknownMemberId.code()]
    );

    // Thousands of would-be members: member ids are handed out up to the group's cap
    // (--group-max-size 50), then GROUP_MAX_SIZE_REACHED; memory stays bounded.
    let mut crowd = Member::new(&broker, "crowd", "crowd").await;
    let mut required = 0;
    let mut full = 0;
    for _ in 0..3000 {
        crowd.id.clear();
        let request = crowd.join_request(10_000, 10_000, &["t"]);
        let response = crowd.client.send_version(&request, 7).await.unwrap();
        match ErrorCode::from_code(response.error_code) {
            Some(ErrorCode::MemberIdRequired) => required += 1,
            Some(ErrorCode::GroupMaxSizeReached) => full += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((required, full), (50, 2950));

    // The first group is untouched by all of this.
    assert_eq!(member.heartbeat().await, 0);
    assert_eq!(committed(&mut client, "timeouts", "t", &[0]).await, vec![1]);
    let (ok, out, err) = broker.cli(&["group", "describe", "timeouts"], "");
    assert!(ok, "{err}");
    assert!(
        out.contains("STATE Stable") && out.contains("MEMBERS 1"),
        "{out}"
    );
}

#[tokio::test]
async fn offsets_of_groups_without_members_expire_after_the_retention() {
    let mut flags = FLAGS.to_vec();
    flags.extend(["--offsets-retention-ms", "1500"]);
    let broker = BrokerProcess::start_with(2, &flags);
    let (ok, _, err) = broker.cli(&["topic", "create", "t"], "");
    assert!(ok, "{err}");
    let mut admin = Client::connect(&broker.address, "admin").await.unwrap();
    // "gone" commits standalone and has no members; "alive" keeps a member heartbeating.
    let mut gone = Member::new(&broker, "gone", "gone").await;
    assert_eq!(gone.commit("t", &[(0, 7)]).await, vec![0]);
    let mut alive = Member::new(&broker, "alive", "alive").await;
    assert_eq!(alive.join(10_000, 10_000, &["t"]).await, 0);
    assert_eq!(alive.sync(|_, _| assignment("t", &[0])).await.0, 0);
    assert_eq!(alive.commit("t", &[(0, 8)]).await, vec![0]);
    assert_eq!(committed(&mut admin, "gone", "t", &[0]).await, vec![7]);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        assert_eq!(alive.heartbeat().await, 0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(committed(&mut admin, "gone", "t", &[0]).await, vec![-1]);
    assert!(!list(&mut admin, &[]).await.iter().any(|(g, _)| g == "gone"));
    assert_eq!(committed(&mut admin, "alive", "t", &[0]).await, vec![8]);
}

/// Segment files of the internal offsets logs, by log directory.
fn offsets_segments(broker: &BrokerProcess) -> Vec<(String, usize)> {
    let mut logs: Vec<(String, usize)> = std::fs::read_dir(broker.data_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("__consumer_offsets-")
        })
        .map(|e| {
            let segments = std::fs::read_dir(e.path())
                .unwrap()
                .flatten()
                .filter(|f| {
                    let name = f.file_name().to_string_lossy().into_owned();
                    name.ends_with(".log") && name.len() == 24
                })
                .count();
            (e.file_name().to_string_lossy().into_owned(), segments)
        })
        .collect();
    logs.sort();
    logs
}

#[tokio::test]
async fn the_offsets_log_is_compacted_and_survives_restarts_and_a_change_of_cores() {
    let mut flags = FLAGS.to_vec();
    flags.extend(["--offsets-segment-bytes", "65536"]);
    let mut broker = BrokerProcess::start_with(2, &flags);
    let (ok, _, err) = broker.cli(&["topic", "create", "t", "--partitions", "4"], "");
    assert!(ok, "{err}");
    let mut admin = Client::connect(&broker.address, "admin").await.unwrap();
    // A group that is deleted early must stay deleted through every compaction and restart.
    let mut doomed = Member::new(&broker, "doomed", "d").await;
    assert_eq!(doomed.commit("t", &[(0, 1)]).await, vec![0]);
    let delete = DeleteGroupsRequest::default().with_groups_names(vec![group_id("doomed")]);
    assert_eq!(admin.send(&delete).await.unwrap().results[0].error_code, 0);
    // 1000 commits of ~700 bytes over 8 groups: about 10 segments' worth per shard.
    let metadata = "m".repeat(600);
    let mut expected = std::collections::BTreeMap::new();
    let mut committers: Vec<Member> = Vec::new();
    for g in 0..8 {
        let mut member = Member::new(&broker, &format!("busy-{g}"), "busy").await;
        member.generation = -1;
        committers.push(member);
    }
    for round in 0..125i64 {
        for (g, member) in committers.iter_mut().enumerate() {
            let request = OffsetCommitRequest::default()
                .with_group_id(group_id(&member.group))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(text("t")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index((g % 4) as i32)
                        .with_committed_offset(round)
                        .with_committed_metadata(Some(text(&metadata)))])]);
            let response = member.client.send_version(&request, 8).await.unwrap();
            assert_eq!(response.topics[0].partitions[0].error_code, 0);
            expected.insert(member.group.clone(), round);
        }
    }
    for (log, segments) in offsets_segments(&broker) {
        assert!(
            segments <= 3,
            "{log} has {segments} segments: not compacted"
        );
    }
    let address = broker.address.clone();
    let check = |cores: usize| {
        let expected = expected.clone();
        let address = address.clone();
        async move {
            let mut admin = Client::connect(&address, "admin").await.unwrap();
            for (g, (group, round)) in expected.iter().enumerate() {
                let partition = (g % 4) as i32;
                assert_eq!(
                    committed(&mut admin, group, "t", &[partition]).await,
                    vec![*round],
                    "{group} with {cores} cores"
                );
            }
            assert_eq!(committed(&mut admin, "doomed", "t", &[0]).await, vec![-1]);
        }
    };
    check(2).await;
    broker.kill_and_restart();
    check(2).await;
    broker.kill_and_restart_with_cores(1);
    check(1).await;
    let logs: Vec<String> = offsets_segments(&broker)
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    assert_eq!(
        logs,
        vec!["__consumer_offsets-0".to_string()],
        "the former shard's log is gone"
    );
    broker.kill_and_restart_with_cores(3);
    check(3).await;
}
