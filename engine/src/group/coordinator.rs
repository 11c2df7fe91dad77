//! `Coordinator`: the groups one shard coordinates, and their state machine.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
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
}

impl Default for GroupSettings {
    fn default() -> GroupSettings {
        GroupSettings {
            min_session_timeout: Duration::from_millis(6_000),
            max_session_timeout: Duration::from_millis(1_800_000),
            initial_rebalance_delay: Duration::from_millis(3_000),
            max_members: 1_000,
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
}

struct Member {
    instance_id: Option<String>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    join_reply: Option<oneshot::Sender<JoinOutcome>>,
    sync_reply: Option<oneshot::Sender<SyncOutcome>>,
    last_seen: Instant,
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
    /// Member ids handed out with MEMBER_ID_REQUIRED, not joined yet.
    pending: HashSet<String>,
    rebalance_deadline: Option<Instant>,
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
            pending: HashSet::new(),
            rebalance_deadline: None,
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

    fn complete(&mut self) {
        let stragglers: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join_reply.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in stragglers {
            self.remove(&id);
        }
        self.generation += 1;
        self.rebalance_deadline = None;
        self.hold_until = None;
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
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let roster: Vec<(String, Option<String>, Bytes)> = self
            .join_order
            .iter()
            .filter_map(|id| self.members.get(id).map(|m| (id, m)))
            .map(|(id, m)| {
                let metadata = m
                    .protocols
                    .iter()
                    .find(|(name, _)| *name == protocol)
                    .map(|(_, meta)| meta.clone())
                    .unwrap_or_default();
                (id.clone(), m.instance_id.clone(), metadata)
            })
            .collect();
        for (id, member) in self.members.iter_mut() {
            member.assignment = Bytes::new();
            if let Some(reply) = member.join_reply.take() {
                let _ = reply.send(JoinOutcome {
                    error: None,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader {
                        roster.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
        self.state = GroupState::CompletingRebalance;
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
            self.generation += 1;
            return;
        }
        self.prepare_rebalance(now, settings);
        self.hold_until = None;
        self.try_complete(now);
    }
}

/// The groups coordinated by one shard.
pub struct Coordinator {
    groups: RefCell<HashMap<String, Group>>,
    settings: GroupSettings,
}

impl Coordinator {
    pub fn new(settings: GroupSettings) -> Coordinator {
        Coordinator {
            groups: RefCell::new(HashMap::new()),
            settings,
        }
    }

    /// Joins a member; the answer comes when the rebalance completes.
    pub async fn join(&self, request: JoinRequest) -> JoinOutcome {
        match self.start_join(request) {
            Ok(answer) => answer.await.unwrap_or_else(|_| {
                JoinOutcome::error(ErrorCode::UnknownServerError, String::new())
            }),
            Err(refused) => *refused,
        }
    }

    fn start_join(
        &self,
        request: JoinRequest,
    ) -> Result<oneshot::Receiver<JoinOutcome>, Box<JoinOutcome>> {
        let now = Instant::now();
        let settings = &self.settings;
        let session = Duration::from_millis(request.session_timeout_ms.max(0) as u64);
        if session < settings.min_session_timeout || session > settings.max_session_timeout {
            return Err(Box::new(JoinOutcome::error(
                ErrorCode::InvalidSessionTimeout,
                request.member_id,
            )));
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
                return Err(Box::new(JoinOutcome::error(
                    ErrorCode::InconsistentGroupProtocol,
                    request.member_id,
                )));
            }
        }
        let known_instance = request.instance_id.as_ref().and_then(|instance| {
            group
                .members
                .iter()
                .find(|(_, m)| m.instance_id.as_ref() == Some(instance))
                .map(|(id, _)| id.clone())
        });
        let member_id = if request.member_id.is_empty() {
            match known_instance {
                Some(id) => id,
                None => {
                    let id = format!("{}-{}", request.client_id, uuid::Uuid::new_v4());
                    if request.require_known_member_id && request.instance_id.is_none() {
                        group.pending.insert(id.clone());
                        return Err(Box::new(JoinOutcome::error(
                            ErrorCode::MemberIdRequired,
                            id,
                        )));
                    }
                    id
                }
            }
        } else {
            if !group.members.contains_key(&request.member_id)
                && !group.pending.contains(&request.member_id)
            {
                return Err(Box::new(JoinOutcome::error(
                    ErrorCode::UnknownMemberId,
                    request.member_id,
                )));
            }
            request.member_id.clone()
        };
        if !group.members.contains_key(&member_id) && group.members.len() >= settings.max_members {
            return Err(Box::new(JoinOutcome::error(
                ErrorCode::GroupMaxSizeReached,
                member_id,
            )));
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
            Duration::from_millis(request.rebalance_timeout_ms.max(0) as u64).max(session);
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
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        let answer = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(group) else {
                return SyncOutcome::error(ErrorCode::UnknownMemberId);
            };
            if !group.members.contains_key(member_id) {
                return SyncOutcome::error(ErrorCode::UnknownMemberId);
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
                GroupState::PreparingRebalance | GroupState::Empty => {
                    return SyncOutcome::error(ErrorCode::RebalanceInProgress)
                }
                GroupState::Stable => return outcome(group, member_id),
                GroupState::CompletingRebalance => {}
            }
            if let Some(member) = group.members.get_mut(member_id) {
                member.last_seen = Instant::now();
            }
            if group.leader.as_deref() == Some(member_id) {
                for (id, assignment) in assignments {
                    if let Some(member) = group.members.get_mut(&id) {
                        member.assignment = assignment;
                    }
                }
                group.state = GroupState::Stable;
                let waiting: Vec<String> = group
                    .members
                    .iter()
                    .filter(|(_, m)| m.sync_reply.is_some())
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in waiting {
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

    pub fn heartbeat(&self, group: &str, generation: i32, member_id: &str) -> Option<ErrorCode> {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group) else {
            return Some(ErrorCode::UnknownMemberId);
        };
        let Some(member) = group.members.get_mut(member_id) else {
            return Some(ErrorCode::UnknownMemberId);
        };
        member.last_seen = Instant::now();
        match group.state {
            GroupState::PreparingRebalance => Some(ErrorCode::RebalanceInProgress),
            _ if generation != group.generation => Some(ErrorCode::IllegalGeneration),
            _ => None,
        }
    }

    /// Removes members; returns each one's error (None: left).
    pub fn leave(&self, group: &str, members: &[String]) -> Vec<Option<ErrorCode>> {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group) else {
            return members
                .iter()
                .map(|_| Some(ErrorCode::UnknownMemberId))
                .collect();
        };
        let results: Vec<Option<ErrorCode>> = members
            .iter()
            .map(|id| {
                if group.remove(id) {
                    None
                } else {
                    Some(ErrorCode::UnknownMemberId)
                }
            })
            .collect();
        if results.iter().any(Option::is_none) {
            group.members_changed(Instant::now(), &self.settings);
        }
        results
    }

    /// Whether a commit from this member and generation is accepted now.
    pub fn check_commit(&self, group: &str, generation: i32, member_id: &str) -> Option<ErrorCode> {
        let groups = self.groups.borrow();
        let group = groups.get(group);
        if generation < 0 {
            // A standalone consumer (no group membership) may commit to a group without members.
            return match group {
                Some(group) if !group.members.is_empty() => Some(ErrorCode::IllegalGeneration),
                _ => None,
            };
        }
        let Some(group) = group else {
            return Some(ErrorCode::IllegalGeneration);
        };
        if !group.members.contains_key(member_id) {
            return Some(ErrorCode::UnknownMemberId);
        }
        if generation != group.generation {
            return Some(ErrorCode::IllegalGeneration);
        }
        if group.state == GroupState::CompletingRebalance {
            return Some(ErrorCode::RebalanceInProgress);
        }
        None
    }

    /// Expires members whose session ran out and finishes overdue rebalances.
    pub fn tick(&self) {
        let now = Instant::now();
        let mut groups = self.groups.borrow_mut();
        for (name, group) in groups.iter_mut() {
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_reply.is_none() && now.duration_since(m.last_seen) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                tracing::info!(group = name, member = id, "session expired");
                group.remove(id);
            }
            if !expired.is_empty() {
                group.members_changed(now, &self.settings);
            }
            group.try_complete(now);
        }
    }
}
