//! `ringlog group list|describe|reset-offsets|delete`, like kafka-consumer-groups.sh and
//! `rpk group`.

use std::collections::BTreeMap;

use bytes::Bytes;
use clap::{ArgGroup, Subcommand};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, GroupId,
    ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use protocol::client::Client;

use super::route::Brokers;
use super::topic::topic_name;
use super::{check, client_error};

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List groups with their state.
    List,
    /// Show a group's state, members, and per partition its committed offset, log end
    /// offset and lag.
    Describe { group: String },
    /// Move a group's committed offsets (refused while the group has active members).
    #[command(group(ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime"])))]
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        /// To the first offset still stored.
        #[arg(long)]
        to_earliest: bool,
        /// To the log end.
        #[arg(long)]
        to_latest: bool,
        /// To this offset (kept within the partition's earliest..latest, as Kafka does).
        #[arg(long)]
        to_offset: Option<i64>,
        /// To the first offset at or after this time: RFC 3339 (2026-11-22T10:00:00Z, UTC
        /// when no zone is given) or milliseconds since the epoch.
        #[arg(long)]
        to_datetime: Option<String>,
        /// Show the new offsets without committing them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete a group and its committed offsets (refused while it has members).
    Delete { group: String },
}

pub async fn run(brokers: &str, command: GroupCommand) -> Result<(), String> {
    let mut brokers = Brokers::connect(brokers).await?;
    match command {
        GroupCommand::List => {
            // Each broker lists the groups it coordinates, as kafka-consumer-groups asks
            // every broker.
            let mut groups: BTreeMap<String, (String, String)> = BTreeMap::new();
            for node in brokers.node_ids() {
                let response = brokers
                    .to(node)
                    .await?
                    .send(&ListGroupsRequest::default())
                    .await
                    .map_err(|error| format!("broker {node}: {error}"))?;
                check(
                    response.error_code,
                    &format!("cannot list the groups of broker {node}"),
                    None,
                )?;
                for group in &response.groups {
                    groups.insert(
                        group.group_id.0.to_string(),
                        (
                            group.group_state.to_string(),
                            group.protocol_type.to_string(),
                        ),
                    );
                }
            }
            println!("{:<40} {:<20} PROTOCOL-TYPE", "GROUP", "STATE");
            for (group, (state, protocol_type)) in &groups {
                println!("{group:<40} {state:<20} {protocol_type}");
            }
            Ok(())
        }
        GroupCommand::Describe { group } => describe(&mut brokers, &group).await,
        GroupCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            to_datetime,
            dry_run,
        } => {
            let target = match (to_earliest, to_latest, to_offset, to_datetime) {
                (true, ..) => Target::Earliest,
                (_, true, ..) => Target::Latest,
                (_, _, Some(offset), _) => Target::Offset(offset),
                (_, _, _, Some(when)) => Target::Time(parse_time(&when)?),
                _ => {
                    return Err(
                        "give one of --to-earliest, --to-latest, --to-offset, --to-datetime".into(),
                    )
                }
            };
            reset_offsets(&mut brokers, &group, &topic, target, dry_run).await
        }
        GroupCommand::Delete { group } => {
            let request = DeleteGroupsRequest::default().with_groups_names(vec![group_id(&group)]);
            let (_, client) = brokers.coordinator(&group).await?;
            let response = client.send(&request).await.map_err(client_error)?;
            for result in &response.results {
                check(
                    result.error_code,
                    &format!("cannot delete group '{group}'"),
                    None,
                )?;
            }
            println!("deleted group {group}");
            Ok(())
        }
    }
}

fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

/// Milliseconds since the epoch from RFC 3339 or a number.
fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let time = humantime::parse_rfc3339_weak(text).map_err(|error| {
        format!(
            "--to-datetime '{text}' is not RFC 3339 (2026-11-22T10:00:00Z) or epoch ms: {error}"
        )
    })?;
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("--to-datetime '{text}' is before 1970"))?;
    Ok(since.as_millis() as i64)
}

/// A member as the CLI shows it.
struct MemberRow {
    id: String,
    client_id: String,
    host: String,
    assigned: Vec<(String, i32)>,
}

/// State and members of a group.
struct Described {
    state: String,
    protocol: String,
    members: Vec<MemberRow>,
}

async fn describe_group(client: &mut Client, group: &str) -> Result<Described, String> {
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let response = client.send(&request).await.map_err(client_error)?;
    let described = response
        .groups
        .first()
        .ok_or("the broker described no group")?;
    check(
        described.error_code,
        &format!("cannot describe group '{group}'"),
        None,
    )?;
    let consumer = described.protocol_type.as_str() == "consumer";
    let members = described
        .members
        .iter()
        .map(|m| {
            let assigned = if consumer {
                assigned_partitions(&m.member_assignment)
            } else {
                Vec::new()
            };
            MemberRow {
                id: m.member_id.to_string(),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assigned,
            }
        })
        .collect();
    Ok(Described {
        state: described.group_state.to_string(),
        protocol: described.protocol_data.to_string(),
        members,
    })
}

/// The (topic, partition) list of a consumer protocol assignment; empty if it does not parse.
fn assigned_partitions(assignment: &Bytes) -> Vec<(String, i32)> {
    let mut bytes = assignment.clone();
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let _ = bytes::Buf::get_i16(&mut bytes);
    match ConsumerProtocolAssignment::decode(&mut bytes, version.clamp(0, 3)) {
        Ok(decoded) => decoded
            .assigned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.0.to_string(), *p)))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Every committed offset of a group, by (topic, partition).
async fn committed(
    client: &mut Client,
    group: &str,
) -> Result<BTreeMap<(String, i32), i64>, String> {
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(None);
    let response = client
        .send_version(&request, 7)
        .await
        .map_err(client_error)?;
    check(
        response.error_code,
        &format!("cannot fetch the offsets of group '{group}'"),
        None,
    )?;
    let mut found = BTreeMap::new();
    for topic in &response.topics {
        for partition in &topic.partitions {
            if partition.committed_offset >= 0 {
                found.insert(
                    (topic.name.0.to_string(), partition.partition_index),
                    partition.committed_offset,
                );
            }
        }
    }
    Ok(found)
}

async fn describe(brokers: &mut Brokers, group: &str) -> Result<(), String> {
    let (coordinator, client) = brokers.coordinator(group).await?;
    let described = describe_group(client, group).await?;
    let committed = committed(client, group).await?;
    if described.state == "Dead" && committed.is_empty() {
        return Err(format!("group '{group}' does not exist"));
    }
    println!(
        "GROUP {group}  COORDINATOR {coordinator}  STATE {}  PROTOCOL {}  MEMBERS {}",
        described.state,
        if described.protocol.is_empty() {
            "-"
        } else {
            &described.protocol
        },
        described.members.len()
    );
    // Every partition with a commit or an owner, with its owner.
    let mut rows: BTreeMap<(String, i32), Option<usize>> =
        committed.keys().map(|key| (key.clone(), None)).collect();
    for (at, member) in described.members.iter().enumerate() {
        for key in &member.assigned {
            rows.insert(key.clone(), Some(at));
        }
    }
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in rows.keys() {
        by_topic.entry(topic.clone()).or_default().push(*partition);
    }
    for (topic, partitions) in &by_topic {
        if let Ok(found) = brokers.offsets(topic, partitions, -1).await {
            for (partition, end) in found {
                ends.insert((topic.clone(), partition), end);
            }
        }
    }
    println!(
        "{:<24} {:>9} {:>14} {:>14} {:>8}  {:<44} {:<20} HOST",
        "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "MEMBER-ID", "CLIENT-ID"
    );
    let dash = || "-".to_string();
    for (key, owner) in &rows {
        let current = committed.get(key).copied();
        let end = ends.get(key).copied();
        let lag = match (current, end) {
            (Some(current), Some(end)) => (end - current).max(0).to_string(),
            _ => dash(),
        };
        let (member, client_id, host) = match owner.map(|at| &described.members[at]) {
            Some(m) => (m.id.clone(), m.client_id.clone(), m.host.clone()),
            None => (dash(), dash(), dash()),
        };
        println!(
            "{:<24} {:>9} {:>14} {:>14} {:>8}  {:<44} {:<20} {}",
            key.0,
            key.1,
            current.map_or_else(dash, |c| c.to_string()),
            end.map_or_else(dash, |e| e.to_string()),
            lag,
            member,
            client_id,
            host
        );
    }
    for m in &described.members {
        if m.assigned.is_empty() {
            println!(
                "{:<24} {:>9} {:>14} {:>14} {:>8}  {:<44} {:<20} {}",
                "-", "-", "-", "-", "-", m.id, m.client_id, m.host
            );
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
    Time(i64),
}

async fn reset_offsets(
    brokers: &mut Brokers,
    group: &str,
    topic: &str,
    target: Target,
    dry_run: bool,
) -> Result<(), String> {
    let (_, client) = brokers.coordinator(group).await?;
    let described = describe_group(client, group).await?;
    if !described.members.is_empty() {
        return Err(format!(
            "cannot reset the offsets of group '{group}': it has {} active member(s) (state {}); stop its consumers first",
            described.members.len(),
            described.state
        ));
    }
    let topic_meta = brokers
        .topic(topic, &format!("cannot reset offsets of topic '{topic}'"))
        .await?;
    let partitions: Vec<i32> = topic_meta
        .partitions
        .iter()
        .map(|p| p.partition_index)
        .collect();
    let earliest: BTreeMap<i32, i64> = brokers
        .offsets(topic, &partitions, -2)
        .await?
        .into_iter()
        .collect();
    let latest: BTreeMap<i32, i64> = brokers
        .offsets(topic, &partitions, -1)
        .await?
        .into_iter()
        .collect();
    let at_time: BTreeMap<i32, i64> = match target {
        Target::Time(ms) => brokers
            .offsets(topic, &partitions, ms)
            .await?
            .into_iter()
            .collect(),
        _ => BTreeMap::new(),
    };
    let mut plan = Vec::new();
    for partition in &partitions {
        let low = earliest.get(partition).copied().unwrap_or(0);
        let high = latest.get(partition).copied().unwrap_or(low);
        let offset = match target {
            Target::Earliest => low,
            Target::Latest => high,
            Target::Offset(offset) => offset.clamp(low, high),
            // No record at or after the time: the log end, as Kafka does.
            Target::Time(_) => match at_time.get(partition) {
                Some(offset) if *offset >= 0 => *offset,
                _ => high,
            },
        };
        plan.push((*partition, offset));
    }
    println!("{:<24} {:>9} {:>14}", "TOPIC", "PARTITION", "NEW-OFFSET");
    for (partition, offset) in &plan {
        println!("{topic:<24} {partition:>9} {offset:>14}");
    }
    if dry_run {
        println!("dry run: nothing committed");
        return Ok(());
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                plan.iter()
                    .map(|(partition, offset)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*partition)
                            .with_committed_offset(*offset)
                    })
                    .collect(),
            )]);
    let (_, client) = brokers.coordinator(group).await?;
    let response = client.send(&request).await.map_err(client_error)?;
    for topic in &response.topics {
        for partition in &topic.partitions {
            check(
                partition.error_code,
                &format!(
                    "cannot commit the offset of partition {}",
                    partition.partition_index
                ),
                None,
            )?;
        }
    }
    println!("reset the offsets of group {group} on {topic}");
    Ok(())
}
