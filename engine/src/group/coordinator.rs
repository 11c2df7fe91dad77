//! `Coordinator`: the groups one shard coordinates, and their state machine.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::ErrorCode;
use tokio::sync::oneshot;

/// Limits and delays of the group protocol (Kafka's `group.*` broker settings).
#[derive(Debug, Clone)]
pub struct GroupSettings {
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    /// How long an empty group waits for more members before its first rebalance completes.
    pub initial_rebalance_delay: Duration,
    pub max_members: usize,
    /// `offsets.retention.minutes`: offsets of a group without members expire this long
    /// after its last commit.
    pub offsets_retention: Duration,
    /// `offsets.topic.segment.bytes`: segment size of the internal offsets logs, which are
    /// compacted each time they roll.
    pub offsets_segment_bytes: u64,
    /// `offsets.topic.num.partitions`: partitions of the replicated `__consumer_offsets`
    /// topic of a cluster (a group is coordinated by the leader of one of them).
    pub offsets_topic_partitions: i32,
    /// `offsets.topic.replication.factor`: its replicas per partition (at most the
    /// number of controller voters).
    pub offsets_topic_replication_factor: i16,
}

impl Default for GroupSettings {
    fn default() -> GroupSettings {
        GroupSettings {
            min_session_timeout: Duration::from_millis(6_000),
            max_session_timeout: Duration::from_millis(1_800_000),
            initial_rebalance_delay: Duration::from_millis(3_000),
            max_members: 1_000,
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            offsets_segment_bytes: 100 * 1024 * 1024,
            offsets_topic_partitions: 16,
            offsets_topic_replication_factor: 3,
        }
    }
}

/// A JoinGroup, as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new member first gets MEMBER_ID_REQUIRED with its id, then joins with it.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    pub error: Option<ErrorCode>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// For the leader: every member's id, instance id and metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinOutcome {
    fn error(error: ErrorCode, member_id: String) -> JoinOutcome {
        JoinOutcome {
            error: Some(error),
            generation: -1,
            member_id,
            ..JoinOutcome::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    pub error: Option<ErrorCode>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    fn error(error: ErrorCode) -> SyncOutcome {
        SyncOutcome {
            error: Some(error),
            ..SyncOutcome::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    /// A group the coordinator does not know (no members, no committed offsets).
    Dead,
}

impl GroupState {
    /// The name Kafka's tools show and ListGroups filters on.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group as DescribeGroups and ListGroups show it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    /// Sent SyncGroup in the current generation.
    synced: bool,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    join_reply: Option<oneshot::Sender<JoinOutcome>>,
    sync_reply: Option<oneshot::Sender<SyncOutcome>>,
    last_seen: Instant,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, meta)| meta.clone())
            .unwrap_or_default()
    }
}

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    /// Ordered by join, so the first joiner leads.
    members: BTreeMap<String, Member>,
    join_order: Vec<String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not joined yet, with the time they
    /// are forgotten (their session timeout).
    pending: HashMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    /// Members that have not sent SyncGroup by here are removed (Kafka's pending-sync
    /// timeout: the rebalance timeout).
    sync_deadline: Option<Instant>,
    /// An empty group's first rebalance waits at least until here for more members.
    hold_until: Option<Instant>,
}

impl Group {
    fn new() -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            join_order: Vec::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            sync_deadline: None,
            hold_until: None,
        }
    }

    fn prepare_rebalance(&mut self, now: Instant, settings: &GroupSettings) {
        if self.state == GroupState::CompletingRebalance {
            for member in self.members.values_mut() {
                if let Some(reply) = member.sync_reply.take() {
                    let _ = reply.send(SyncOutcome::error(ErrorCode::RebalanceInProgress));
                }
            }
        }
        if self.state != GroupState::PreparingRebalance {
            let timeout = self
                .members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or_default();
            self.rebalance_deadline = Some(now + timeout);
            self.sync_deadline = None;
            self.hold_until =
                (self.state == GroupState::Empty).then(|| now + settings.initial_rebalance_delay);
            self.state = GroupState::PreparingRebalance;
        }
    }

    /// Protocols every member supports, in the leader's order of preference.
    fn common_protocol(&self) -> Option<String> {
        let leader = self
            .leader
            .as_ref()
            .and_then(|id| self.members.get(id))
            .or_else(|| self.members.values().next())?;
        leader
            .protocols
            .iter()
            .map(|(name, _)| name)
            .find(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(other, _)| other == *name))
            })
            .cloned()
    }

    fn try_complete(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let everyone_joined = self.members.values().all(|m| m.join_reply.is_some());
        let held = self.hold_until.is_some_and(|until| now < until);
        let overdue = self
            .rebalance_deadline
            .is_some_and(|deadline| now >= deadline);
        if (everyone_joined && !held) || overdue {
            self.complete();
        }
    }

    /// Ids of the members `keep` selects.
    fn member_ids(&self, keep: impl Fn(&Member) -> bool) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, m)| keep(m))
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn complete(&mut self) {
        for id in self.member_ids(|m| m.join_reply.is_none()) {
            self.remove(&id);
        }
        self.generation += 1;
        self.rebalance_deadline = None;
        self.hold_until = None;
        self.sync_deadline = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        if !self
            .leader
            .as_ref()
            .is_some_and(|leader| self.members.contains_key(leader))
        {
            self.leader = self
                .join_order
                .iter()
                .find(|id| self.members.contains_key(*id))
                .cloned();
        }
        self.protocol = self.common_protocol();
        let roster = self.roster();
        let longest_rebalance = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.sync_deadline = Some(Instant::now() + longest_rebalance);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let outcome = self.join_outcome(&id, &roster);
            if let Some(member) = self.members.get_mut(&id) {
                member.assignment = Bytes::new();
                member.synced = false;
                if let Some(reply) = member.join_reply.take() {
                    let _ = reply.send(outcome);
                }
            }
        }
        self.state = GroupState::CompletingRebalance;
    }

    /// Every member's id, instance id and metadata for the chosen protocol, in join order.
    fn roster(&self) -> Vec<(String, Option<String>, Bytes)> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.join_order
            .iter()
            .filter_map(|id| self.members.get(id).map(|m| (id, m)))
            .map(|(id, m)| (id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
            .collect()
    }

    /// The JoinGroup answer of member `id` in the current generation.
    fn join_outcome(&self, id: &str, roster: &[(String, Option<String>, Bytes)]) -> JoinOutcome {
        let leader = self.leader.clone().unwrap_or_default();
        JoinOutcome {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            members: if id == leader {
                roster.to_vec()
            } else {
                Vec::new()
            },
            leader,
            member_id: id.to_string(),
        }
    }

    /// The member holding static `instance` id, if any.
    fn instance_owner(&self, instance: &str) -> Option<&String> {
        self.members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance))
            .map(|(id, _)| id)
    }

    /// Whether `member_id` (with its static `instance` id) may act in this group:
    /// FENCED_INSTANCE_ID when the instance now belongs to another member id,
    /// UNKNOWN_MEMBER_ID when the member is not in the group.
    fn check_member(&self, member_id: &str, instance: Option<&str>) -> Option<ErrorCode> {
        if let Some(owner) = instance.and_then(|instance| self.instance_owner(instance)) {
            if owner != member_id {
                return Some(ErrorCode::FencedInstanceId);
            }
        }
        if !self.members.contains_key(member_id) {
            return Some(ErrorCode::UnknownMemberId);
        }
        None
    }

    /// A static member rejoining without its member id (it restarted): it takes over the
    /// place of `old` under a new id, and requests still carrying `old` are fenced. A stable
    /// group whose follower comes back with the same metadata keeps its assignment without a
    /// rebalance (the point of static membership); otherwise the group rebalances.
    fn replace_static_member(
        &mut self,
        old: &str,
        request: JoinRequest,
        session: Duration,
        now: Instant,
        settings: &GroupSettings,
    ) -> Result<oneshot::Receiver<JoinOutcome>, Box<JoinOutcome>> {
        let Some(mut member) = self.members.remove(old) else {
            return Err(Box::new(JoinOutcome::error(
                ErrorCode::UnknownMemberId,
                String::new(),
            )));
        };
        let instance = member.instance_id.clone().unwrap_or_default();
        let new_id = format!("{instance}-{}", uuid::Uuid::new_v4());
        if let Some(reply) = member.join_reply.take() {
            let _ = reply.send(JoinOutcome::error(ErrorCode::FencedInstanceId, old.into()));
        }
        if let Some(reply) = member.sync_reply.take() {
            let _ = reply.send(SyncOutcome::error(ErrorCode::FencedInstanceId));
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        let same_metadata = member.metadata(&protocol)
            == request
                .protocols
                .iter()
                .find(|(name, _)| *name == protocol)
                .map(|(_, meta)| meta.clone())
                .unwrap_or_default();
        member.protocols = request.protocols;
        member.session_timeout = session;
        member.rebalance_timeout =
            Duration::from_millis(request.rebalance_timeout_ms.max(0) as u64);
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.last_seen = now;
        for id in self.join_order.iter_mut() {
            if id == old {
                *id = new_id.clone();
            }
        }
        let was_leader = self.leader.as_deref() == Some(old);
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        if self.state == GroupState::Stable && same_metadata && !was_leader {
            let roster = self.roster();
            return Err(Box::new(self.join_outcome(&new_id, &roster)));
        }
        let (reply, answer) = oneshot::channel();
        if let Some(member) = self.members.get_mut(&new_id) {
            member.join_reply = Some(reply);
        }
        self.prepare_rebalance(now, settings);
        self.try_complete(now);
        Ok(answer)
    }

    fn describe(&self) -> GroupDescription {
        let protocol = self.protocol.clone().unwrap_or_default();
        let stable = matches!(self.state, GroupState::Stable);
        GroupDescription {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: self
                .join_order
                .iter()
                .filter_map(|id| self.members.get(id).map(|m| (id, m)))
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata(&protocol),
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }

    fn remove(&mut self, id: &str) -> bool {
        let Some(member) = self.members.remove(id) else {
            return false;
        };
        self.join_order.retain(|other| other != id);
        if let Some(reply) = member.join_reply {
            let _ = reply.send(JoinOutcome::error(
                ErrorCode::UnknownMemberId,
                id.to_string(),
            ));
        }
        if let Some(reply) = member.sync_reply {
            let _ = reply.send(SyncOutcome::error(ErrorCode::UnknownMemberId));
        }
        true
    }

    /// After members left or expired: rebalance the rest, or go empty.
    fn members_changed(&mut self, now: Instant, settings: &GroupSettings) {
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            self.rebalance_deadline = None;
            self.sync_deadline = None;
            self.generation += 1;
            return;
        }
        self.prepare_rebalance(now, settings);
        self.hold_until = None;
        self.try_complete(now);
    }
}

/// Most member ids handed out (MEMBER_ID_REQUIRED) and not yet used, across a shard's
/// groups: each also keeps its group in memory until it expires, so this bounds what a
/// client can make the coordinator hold by asking for ids under many group names.
const PENDING_MEMBERS_MAX: usize = 100_000;

/// The groups coordinated by one shard.
pub struct Coordinator {
    groups: RefCell<HashMap<String, Group>>,
    settings: GroupSettings,
    /// Member ids handed out and not yet used, across groups (recounted every tick).
    pending: std::cell::Cell<usize>,
}

impl Coordinator {
    pub fn new(settings: GroupSettings) -> Coordinator {
        Coordinator {
            groups: RefCell::new(HashMap::new()),
            settings,
            pending: std::cell::Cell::new(0),
        }
    }

    /// Joins a member; the answer comes when the rebalance completes.
    pub async fn join(&self, request: JoinRequest) -> JoinOutcome {
        match self.start_join(request) {
            Ok(answer) => answer.await.unwrap_or_else(|_| {
                JoinOutcome::error(ErrorCode::UnknownServerError, String::new())
            }),
            Err(immediate) => *immediate,
        }
    }

    /// Registers a join; `Err` carries an answer given at once (a refusal, a member id to
    /// join with, or a static member's unchanged assignment).
    fn start_join(
        &self,
        request: JoinRequest,
    ) -> Result<oneshot::Receiver<JoinOutcome>, Box<JoinOutcome>> {
        let now = Instant::now();
        let settings = &self.settings;
        let refuse = |error: ErrorCode, member_id: String| {
            Err(Box::new(JoinOutcome::error(error, member_id)))
        };
        let session = Duration::from_millis(request.session_timeout_ms.max(0) as u64);
        if session < settings.min_session_timeout || session > settings.max_session_timeout {
            return refuse(ErrorCode::InvalidSessionTimeout, request.member_id);
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return refuse(ErrorCode::InconsistentGroupProtocol, request.member_id);
        }
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .entry(request.group.clone())
            .or_insert_with(Group::new);
        if !group.members.is_empty() {
            let type_differs =
                group.protocol_type.as_deref() != Some(request.protocol_type.as_str());
            let shared = group.members.values().all(|m| {
                m.protocols
                    .iter()
                    .any(|(name, _)| request.protocols.iter().any(|(mine, _)| mine == name))
            });
            if type_differs || !shared {
                return refuse(ErrorCode::InconsistentGroupProtocol, request.member_id);
            }
        }
        let instance = request.instance_id.as_deref();
        let known_instance = instance.and_then(|i| group.instance_owner(i)).cloned();
        let member_id = if request.member_id.is_empty() {
            match known_instance {
                // A static member restarting: it takes over its instance's place under a
                // new member id; the old id is fenced.
                Some(old) => {
                    return group.replace_static_member(&old, request, session, now, settings)
                }
                None => {
                    let id = format!("{}-{}", request.client_id, uuid::Uuid::new_v4());
                    if request.require_known_member_id && instance.is_none() {
                        if group.pending.len() + group.members.len() >= settings.max_members
                            || self.pending.get() >= PENDING_MEMBERS_MAX
                        {
                            return refuse(ErrorCode::GroupMaxSizeReached, String::new());
                        }
                        group.pending.insert(id.clone(), now + session);
                        self.pending.set(self.pending.get() + 1);
                        return refuse(ErrorCode::MemberIdRequired, id);
                    }
                    id
                }
            }
        } else {
            if known_instance
                .as_ref()
                .is_some_and(|owner| *owner != request.member_id)
            {
                return refuse(ErrorCode::FencedInstanceId, request.member_id);
            }
            if !group.members.contains_key(&request.member_id)
                && !group.pending.contains_key(&request.member_id)
            {
                return refuse(ErrorCode::UnknownMemberId, request.member_id);
            }
            request.member_id.clone()
        };
        if !group.members.contains_key(&member_id) && group.members.len() >= settings.max_members {
            group.pending.remove(&member_id);
            return refuse(ErrorCode::GroupMaxSizeReached, member_id);
        }
        group.pending.remove(&member_id);
        let (reply, answer) = oneshot::channel();
        if !group.members.contains_key(&member_id) {
            group.join_order.push(member_id.clone());
        }
        let member = group
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                instance_id: request.instance_id.clone(),
                client_id: request.client_id.clone(),
                client_host: request.client_host.clone(),
                synced: false,
                session_timeout: session,
                rebalance_timeout: Duration::ZERO,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                join_reply: None,
                sync_reply: None,
                last_seen: now,
            });
        member.session_timeout = session;
        member.rebalance_timeout =
            Duration::from_millis(request.rebalance_timeout_ms.max(0) as u64);
        member.protocols = request.protocols;
        member.last_seen = now;
        if let Some(previous) = member.join_reply.replace(reply) {
            let _ = previous.send(JoinOutcome::error(
                ErrorCode::UnknownMemberId,
                member_id.clone(),
            ));
        }
        group.protocol_type = Some(request.protocol_type);
        group.prepare_rebalance(now, settings);
        group.try_complete(now);
        Ok(answer)
    }

    /// SyncGroup: the leader hands out assignments; everyone gets theirs.
    pub async fn sync(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        let answer = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(group) else {
                return SyncOutcome::error(ErrorCode::UnknownMemberId);
            };
            if let Some(error) = group.check_member(member_id, instance_id) {
                return SyncOutcome::error(error);
            }
            if generation != group.generation {
                return SyncOutcome::error(ErrorCode::IllegalGeneration);
            }
            let outcome = |group: &Group, id: &str| SyncOutcome {
                error: None,
                protocol_type: group.protocol_type.clone(),
                protocol_name: group.protocol.clone(),
                assignment: group
                    .members
                    .get(id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default(),
            };
            match group.state {
                GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {
                    return SyncOutcome::error(ErrorCode::RebalanceInProgress)
                }
                GroupState::Stable | GroupState::CompletingRebalance => {}
            }
            if let Some(member) = group.members.get_mut(member_id) {
                member.last_seen = Instant::now();
                member.synced = true;
            }
            if group.members.values().all(|m| m.synced) {
                group.sync_deadline = None;
            }
            if group.state == GroupState::Stable {
                return outcome(group, member_id);
            }
            if group.leader.as_deref() == Some(member_id) {
                for (id, assignment) in assignments {
                    if let Some(member) = group.members.get_mut(&id) {
                        member.assignment = assignment;
                    }
                }
                group.state = GroupState::Stable;
                for id in group.member_ids(|m| m.sync_reply.is_some()) {
                    let reply = group.members.get_mut(&id).and_then(|m| m.sync_reply.take());
                    if let Some(reply) = reply {
                        let _ = reply.send(outcome(group, &id));
                    }
                }
                return outcome(group, member_id);
            }
            let (reply, answer) = oneshot::channel();
            if let Some(member) = group.members.get_mut(member_id) {
                member.sync_reply = Some(reply);
            }
            answer
        };
        answer
            .await
            .unwrap_or_else(|_| SyncOutcome::error(ErrorCode::RebalanceInProgress))
    }

    pub fn heartbeat(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Option<ErrorCode> {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group) else {
            return Some(ErrorCode::UnknownMemberId);
        };
        if let Some(error) = group.check_member(member_id, instance_id) {
            return Some(error);
        }
        if let Some(member) = group.members.get_mut(member_id) {
            member.last_seen = Instant::now();
        }
        match group.state {
            GroupState::PreparingRebalance => Some(ErrorCode::RebalanceInProgress),
            _ if generation != group.generation => Some(ErrorCode::IllegalGeneration),
            _ => None,
        }
    }

    /// Removes members, each named by member id and/or static instance id (an instance id
    /// alone removes whoever holds it, as Kafka's admin `removeMembersFromConsumerGroup`
    /// does); returns each one's error (None: left).
    pub fn leave(
        &self,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> Vec<Option<ErrorCode>> {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group) else {
            return members
                .iter()
                .map(|_| Some(ErrorCode::UnknownMemberId))
                .collect();
        };
        let results: Vec<Option<ErrorCode>> = members
            .iter()
            .map(|(id, instance)| {
                let id = match (instance, id.is_empty()) {
                    (Some(instance), true) => match group.instance_owner(instance) {
                        Some(owner) => owner.clone(),
                        None => return Some(ErrorCode::UnknownMemberId),
                    },
                    _ => id.clone(),
                };
                if let Some(error) = group.check_member(&id, instance.as_deref()) {
                    return Some(error);
                }
                group.remove(&id);
                None
            })
            .collect();
        if results.iter().any(Option::is_none) {
            group.members_changed(Instant::now(), &self.settings);
        }
        results
    }

    /// Whether a commit from this member and generation is accepted now.
    pub fn check_commit(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Option<ErrorCode> {
        let groups = self.groups.borrow();
        let group = groups.get(group);
        if generation < 0 {
            // A standalone consumer or an admin (no group membership) may commit to a group
            // without members; to one with members it is not one of them, so Kafka answers
            // UNKNOWN_MEMBER_ID (AlterConsumerGroupOffsets on an active group).
            return match group {
                Some(group) if !group.members.is_empty() => Some(ErrorCode::UnknownMemberId),
                _ => None,
            };
        }
        let Some(group) = group else {
            return Some(ErrorCode::IllegalGeneration);
        };
        if let Some(error) = group.check_member(member_id, instance_id) {
            return Some(error);
        }
        if generation != group.generation {
            return Some(ErrorCode::IllegalGeneration);
        }
        if group.state == GroupState::CompletingRebalance {
            return Some(ErrorCode::RebalanceInProgress);
        }
        None
    }

    /// The group as DescribeGroups shows it; `None` when the coordinator holds no state
    /// for it (it may still have committed offsets).
    pub fn describe(&self, group: &str) -> Option<GroupDescription> {
        self.groups.borrow().get(group).map(Group::describe)
    }

    /// (name, protocol type, state) of every group with members or a rebalance under way.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        self.groups
            .borrow()
            .iter()
            .map(|(name, group)| {
                (
                    name.clone(),
                    group.protocol_type.clone().unwrap_or_default(),
                    group.state,
                )
            })
            .collect()
    }

    /// Whether the group has members (then it cannot be deleted or have offsets reset).
    pub fn has_members(&self, group: &str) -> bool {
        self.groups
            .borrow()
            .get(group)
            .is_some_and(|g| !g.members.is_empty())
    }

    /// Topics the members of a consumer group subscribe to (from their metadata for the
    /// chosen protocol); empty for groups of other protocol types.
    pub fn subscribed_topics(&self, group: &str) -> Vec<String> {
        let groups = self.groups.borrow();
        let Some(group) = groups.get(group) else {
            return Vec::new();
        };
        if group.protocol_type.as_deref() != Some("consumer") {
            return Vec::new();
        }
        let protocol = group.protocol.clone().unwrap_or_default();
        let mut topics: Vec<String> = group
            .members
            .values()
            .flat_map(|m| consumer_subscription(&m.metadata(&protocol)))
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// Forgets an empty group (DeleteGroups): it is Dead from here on.
    /// Drops a group whatever its state: its coordination moved to another broker (its
    /// offsets partition's leadership did). Members waiting for a JoinGroup or SyncGroup
    /// answer are told NOT_COORDINATOR, so they find the new coordinator and rejoin there.
    pub fn drop_group(&self, group: &str) {
        let Some(mut dropped) = self.groups.borrow_mut().remove(group) else {
            return;
        };
        for (id, member) in dropped.members.iter_mut() {
            if let Some(reply) = member.join_reply.take() {
                let _ = reply.send(JoinOutcome::error(ErrorCode::NotCoordinator, id.clone()));
            }
            if let Some(reply) = member.sync_reply.take() {
                let _ = reply.send(SyncOutcome::error(ErrorCode::NotCoordinator));
            }
        }
    }

    pub fn forget(&self, group: &str) {
        let mut groups = self.groups.borrow_mut();
        if groups.get(group).is_some_and(|g| g.members.is_empty()) {
            groups.remove(group);
        }
    }

    /// Expires members whose session ran out, members that never synced, and ids handed out
    /// but never used; finishes overdue rebalances; drops empty groups from memory (their
    /// offsets stay in the offset store).
    pub fn tick(&self) {
        let now = Instant::now();
        let mut groups = self.groups.borrow_mut();
        for (name, group) in groups.iter_mut() {
            group.pending.retain(|_, forget_at| now < *forget_at);
            let sync_overdue = group.sync_deadline.is_some_and(|deadline| now >= deadline);
            if sync_overdue {
                group.sync_deadline = None;
            }
            let expired = group.member_ids(|m| {
                let session_over =
                    m.join_reply.is_none() && now.duration_since(m.last_seen) > m.session_timeout;
                session_over || (sync_overdue && !m.synced)
            });
            for id in &expired {
                tracing::info!(group = name, member = id, "member expired");
                group.remove(id);
            }
            if !expired.is_empty() {
                group.members_changed(now, &self.settings);
            }
            group.try_complete(now);
        }
        groups.retain(|_, group| {
            !(group.state == GroupState::Empty
                && group.members.is_empty()
                && group.pending.is_empty())
        });
        self.pending
            .set(groups.values().map(|group| group.pending.len()).sum());
    }
}

/// The topics in a consumer protocol subscription (`ConsumerProtocolSubscription`, the
/// metadata of the "consumer" protocol type); empty if it does not parse.
pub fn consumer_subscription(metadata: &[u8]) -> Vec<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut bytes = Bytes::copy_from_slice(metadata);
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let _ = bytes::Buf::get_i16(&mut bytes);
    let decoded = std::panic::catch_unwind(move || {
        ConsumerProtocolSubscription::decode(&mut bytes, version.clamp(0, 3))
    });
    match decoded {
        Ok(Ok(subscription)) => subscription
            .topics
            .iter()
            .map(|topic| topic.to_string())
            .collect(),
        _ => Vec::new(),
    }
}
