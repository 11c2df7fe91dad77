//! A partition's part in its replica set, in a cluster: leader or follower, as the
//! controller's view says, and what each needs on its owner shard.
//!
//! The leader stamps its epoch on every batch it appends, tracks every follower's log end
//! (the offset of its last fetch) and when it last caught up, and moves the high watermark
//! to the lowest log end over the ISR (its own being what it has fdatasync'ed). Consumers
//! see only records below it, and acks=all is answered once it passes the batch.
//! A follower appends what its replica fetcher brings (offsets and epochs as the leader
//! gave them), after cutting any tail the leader's epochs say it does not have.
//! A single node has none of this: the log's own high watermark is the partition's.

use std::collections::BTreeMap;
use std::pin::pin;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use protocol::record_batch::{self, BatchHeader};
use protocol::ErrorCode;

use super::epochs::UNDEFINED_EPOCH;
use super::{LocalPartition, PartitionError};
use crate::storage::{Ack, Appended, StorageError};

/// Why a replica refused or could not finish something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    #[error("this broker is not the leader of the partition (leader: {leader})")]
    NotLeader { leader: i32 },
    #[error("leader epoch {asked} is older than this partition's {current}")]
    FencedEpoch { asked: i32, current: i32 },
    #[error("leader epoch {asked} is newer than this partition's {current}")]
    UnknownEpoch { asked: i32, current: i32 },
    #[error("{isr} in-sync replicas, min.insync.replicas is {min}")]
    NotEnoughReplicas { isr: usize, min: usize },
    #[error("written to the leader, but the ISR fell to {isr}, below min.insync.replicas {min}")]
    NotEnoughReplicasAfterAppend { isr: usize, min: usize },
    #[error("the in-sync replicas did not have the records within {0:?}")]
    TimedOut(Duration),
    #[error("batch at offset {batch} from the leader does not follow this log's end {log_end}")]
    OutOfOrder { batch: i64, log_end: i64 },
}

impl ReplicaError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ReplicaError::NotLeader { .. } => ErrorCode::NotLeaderOrFollower,
            ReplicaError::FencedEpoch { .. } => ErrorCode::FencedLeaderEpoch,
            ReplicaError::UnknownEpoch { .. } => ErrorCode::UnknownLeaderEpoch,
            ReplicaError::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
            ReplicaError::NotEnoughReplicasAfterAppend { .. } => {
                ErrorCode::NotEnoughReplicasAfterAppend
            }
            ReplicaError::TimedOut(_) => ErrorCode::RequestTimedOut,
            ReplicaError::OutOfOrder { .. } => ErrorCode::UnknownServerError,
        }
    }
}

/// This broker's part in a partition, as the controller's view gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    Leader {
        epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        /// `replica.lag.time.max.ms`.
        lag_max: Duration,
    },
    Follower {
        leader: i32,
        epoch: i32,
    },
    /// The partition has no leader now.
    Leaderless,
}

pub(super) enum Role {
    /// A single node: no replicas.
    Single,
    /// In a cluster, not yet told its part, or the partition has no leader.
    Waiting,
    Leader(Leadership),
    Follower(Following),
}

pub(super) struct Leadership {
    epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    /// Log end offset when this leadership began.
    start_offset: i64,
    lag_max: Duration,
    followers: BTreeMap<i32, Progress>,
    began: Instant,
    /// When an ISR change was last sent to the controller (not yet seen applied).
    isr_change_sent: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The follower's log end: the offset of its last fetch (-1 before its first fetch of
    /// this leadership).
    log_end_offset: i64,
    /// Last time its log end reached the leader's (from the start of this leadership).
    last_caught_up: Instant,
    last_fetch_at: Instant,
    leader_end_at_last_fetch: i64,
}

pub(super) struct Following {
    leader: i32,
    epoch: i32,
    /// Whether the tail was checked against the leader's epochs in this epoch.
    checked: bool,
}

/// What a follower partition asks its replica fetcher to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    pub leader: i32,
    pub epoch: i32,
    /// The tail must first be checked against the leader (OffsetsForLeaderEpoch).
    pub needs_epoch_check: bool,
    /// The latest epoch of the local log (for that check).
    pub latest_epoch: i32,
    pub log_end_offset: i64,
    pub log_start_offset: i64,
}

/// An ISR change a leader wants the controller to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    /// Replicas joining and leaving.
    pub joining: Vec<i32>,
    pub leaving: Vec<i32>,
}

/// How a leader's ISR changed with a new view: replicas that left and that joined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IsrChanged {
    pub shrinks: u64,
    pub expands: u64,
}

/// A leader's replication facts for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderFacts {
    pub under_replicated: bool,
    /// Records the furthest follower is behind the leader's log end.
    pub max_lag: i64,
}

impl LocalPartition {
    /// The partition's high watermark: consumers read below it. On a leader, the lowest log
    /// end over the ISR; on a follower, the leader's as last heard (no higher than its own
    /// log); on a single node, the log's.
    pub fn high_watermark(&self) -> i64 {
        self.advance_high_watermark();
        match &*self.role.borrow() {
            Role::Single => self.log.high_watermark(),
            _ => self.high_watermark.get().min(self.log.high_watermark()),
        }
    }

    /// The epoch this broker leads the partition in, if it leads it.
    pub fn leader_epoch(&self) -> Option<i32> {
        match &*self.role.borrow() {
            Role::Leader(leadership) => Some(leadership.epoch),
            _ => None,
        }
    }

    /// Whether clients may read and write here: a single node or the leader.
    pub fn check_leader(&self, client_epoch: Option<i32>) -> Result<(), ReplicaError> {
        match &*self.role.borrow() {
            Role::Single => Ok(()),
            Role::Leader(leadership) => check_epoch(client_epoch, leadership.epoch),
            Role::Follower(following) => Err(ReplicaError::NotLeader {
                leader: following.leader,
            }),
            Role::Waiting => Err(ReplicaError::NotLeader { leader: -1 }),
        }
    }

    /// The epoch a leader stamps on what it appends (None on a single node), after checking
    /// that this broker leads the partition and, for acks=all, that the ISR is large enough.
    pub(super) fn epoch_for_append(&self, ack: Ack) -> Result<Option<i32>, ReplicaError> {
        match &*self.role.borrow() {
            Role::Single => Ok(None),
            Role::Leader(leadership) => {
                let min = self.min_insync_replicas();
                let isr = leadership.isr_in_touch(self.node_id);
                if ack == Ack::Durable && isr < min {
                    return Err(ReplicaError::NotEnoughReplicas { isr, min });
                }
                Ok(Some(leadership.epoch))
            }
            Role::Follower(following) => Err(ReplicaError::NotLeader {
                leader: following.leader,
            }),
            Role::Waiting => Err(ReplicaError::NotLeader { leader: -1 }),
        }
    }

    fn min_insync_replicas(&self) -> usize {
        self.settings.borrow().min_insync_replicas.max(1) as usize
    }

    /// Waits until the ISR has everything up to `last_offset`, appended in leader `epoch`
    /// (acks=all on a leader); at once on a single node.
    pub async fn wait_replicated(
        &self,
        last_offset: i64,
        epoch: Option<i32>,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<(), ReplicaError> {
        let Some(epoch) = epoch else {
            return Ok(());
        };
        loop {
            let moved = self.hw_moved.clone();
            let mut notified = pin!(moved.notified());
            notified.as_mut().enable();
            self.advance_high_watermark();
            {
                let role = self.role.borrow();
                let leadership = match &*role {
                    Role::Leader(leadership) if leadership.epoch == epoch => leadership,
                    Role::Follower(Following { leader, .. }) => {
                        return Err(ReplicaError::NotLeader { leader: *leader })
                    }
                    _ => return Err(ReplicaError::NotLeader { leader: -1 }),
                };
                if self.high_watermark.get() > last_offset {
                    return Ok(());
                }
                let min = self.min_insync_replicas();
                let isr = leadership.isr_in_touch(self.node_id);
                if isr < min {
                    return Err(ReplicaError::NotEnoughReplicasAfterAppend { isr, min });
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(ReplicaError::TimedOut(timeout));
            }
        }
    }

    /// On a leader, moves the high watermark up to the lowest log end over the ISR (its
    /// own: what it has made durable); wakes waiters when it moves.
    pub fn advance_high_watermark(&self) {
        let candidate = {
            let role = self.role.borrow();
            let Role::Leader(leadership) = &*role else {
                return;
            };
            let mut candidate = self.log.high_watermark();
            for replica in &leadership.isr {
                if *replica == self.node_id {
                    continue;
                }
                match leadership.followers.get(replica) {
                    Some(progress) if progress.log_end_offset >= 0 => {
                        candidate = candidate.min(progress.log_end_offset)
                    }
                    // Not heard from in this leadership: the watermark waits for it.
                    _ => return,
                }
            }
            candidate
        };
        if candidate > self.high_watermark.get() {
            self.high_watermark.set(candidate);
            self.hw_moved.notify_waiters();
            self.data_arrived.notify_waiters();
        }
    }

    /// A follower's fetch reached this leader: `fetch_offset` is its log end.
    pub fn follower_fetched(
        &self,
        replica: i32,
        fetch_offset: i64,
        client_epoch: Option<i32>,
    ) -> Result<(), ReplicaError> {
        {
            let mut role = self.role.borrow_mut();
            let leadership = match &mut *role {
                Role::Leader(leadership) => leadership,
                Role::Follower(following) => {
                    return Err(ReplicaError::NotLeader {
                        leader: following.leader,
                    })
                }
                _ => return Err(ReplicaError::NotLeader { leader: -1 }),
            };
            check_epoch(client_epoch, leadership.epoch)?;
            if !leadership.replicas.contains(&replica) {
                return Err(ReplicaError::NotLeader {
                    leader: self.node_id,
                });
            }
            let now = Instant::now();
            let leader_end = self.log.high_watermark();
            let since = leadership.began;
            let progress = leadership.followers.entry(replica).or_insert(Progress {
                log_end_offset: -1,
                last_caught_up: since,
                last_fetch_at: now,
                leader_end_at_last_fetch: -1,
            });
            if fetch_offset >= leader_end {
                progress.last_caught_up = now;
            } else if progress.leader_end_at_last_fetch >= 0
                && fetch_offset >= progress.leader_end_at_last_fetch
            {
                progress.last_caught_up = progress.last_caught_up.max(progress.last_fetch_at);
            }
            progress.log_end_offset = fetch_offset;
            progress.last_fetch_at = now;
            progress.leader_end_at_last_fetch = leader_end;
        }
        self.advance_high_watermark();
        Ok(())
    }

    /// The ISR change this leader should ask for: followers not caught up for `lag_max`
    /// leave; live replicas (per `is_live`) whose log end reached the high watermark (and
    /// this leadership's start) join. None when nothing changes or a change is in flight.
    pub fn isr_change(
        &self,
        lag_max: Duration,
        is_live: impl Fn(i32) -> bool,
    ) -> Option<IsrChange> {
        let mut role = self.role.borrow_mut();
        let Role::Leader(leadership) = &mut *role else {
            return None;
        };
        if leadership
            .isr_change_sent
            .is_some_and(|sent| sent.elapsed() < lag_max.max(Duration::from_secs(1)))
        {
            return None;
        }
        let now = Instant::now();
        let high_watermark = self.high_watermark.get();
        let since = leadership.began;
        let mut leaving = Vec::new();
        let mut joining = Vec::new();
        for &replica in &leadership.replicas {
            if replica == self.node_id {
                continue;
            }
            let progress = leadership.followers.get(&replica);
            if leadership.isr.contains(&replica) {
                let caught_up = progress.map_or(since, |progress| progress.last_caught_up);
                if now.saturating_duration_since(caught_up) > lag_max {
                    leaving.push(replica);
                }
            } else if let Some(progress) = progress {
                if progress.log_end_offset >= high_watermark
                    && progress.log_end_offset >= leadership.start_offset
                    && now.saturating_duration_since(progress.last_caught_up) <= lag_max
                    && is_live(replica)
                {
                    joining.push(replica);
                }
            }
        }
        if leaving.is_empty() && joining.is_empty() {
            return None;
        }
        leadership.isr_change_sent = Some(now);
        let isr = leadership
            .replicas
            .iter()
            .copied()
            .filter(|replica| {
                (leadership.isr.contains(replica) && !leaving.contains(replica))
                    || joining.contains(replica)
            })
            .collect();
        Some(IsrChange {
            leader_epoch: leadership.epoch,
            isr,
            joining,
            leaving,
        })
    }

    /// The controller did not take an ISR change: it may be asked again at once.
    pub fn isr_change_failed(&self) {
        if let Role::Leader(leadership) = &mut *self.role.borrow_mut() {
            leadership.isr_change_sent = None;
        }
    }

    /// A leader's facts for the metrics; None elsewhere.
    pub fn leader_facts(&self) -> Option<LeaderFacts> {
        let role = self.role.borrow();
        let Role::Leader(leadership) = &*role else {
            return None;
        };
        let end = self.log.log_end_offset();
        let max_lag = leadership
            .replicas
            .iter()
            .filter(|replica| **replica != self.node_id)
            .map(|replica| {
                leadership
                    .followers
                    .get(replica)
                    .filter(|progress| progress.log_end_offset >= 0)
                    .map_or(end, |progress| end - progress.log_end_offset)
            })
            .max()
            .unwrap_or(0);
        Some(LeaderFacts {
            under_replicated: leadership.isr.len() < leadership.replicas.len(),
            max_lag: max_lag.max(0),
        })
    }

    /// Takes the part the controller's view gives this broker. Becoming leader in a new
    /// epoch stores the epoch's start (the log end) first; becoming a follower in a new
    /// epoch has the tail checked against the new leader before anything is fetched.
    /// Returns how the ISR of a partition this broker still leads changed.
    pub async fn assign(&self, assignment: Assignment) -> Result<IsrChanged, StorageError> {
        let mut changed = IsrChanged::default();
        // A follower's writes are synced on demand; a leader's as configured.
        self.log
            .set_follower(matches!(assignment, Assignment::Follower { .. }));
        match assignment {
            Assignment::Leader {
                epoch,
                replicas,
                isr,
                lag_max,
            } => {
                if let Role::Leader(leadership) = &mut *self.role.borrow_mut() {
                    if leadership.epoch == epoch {
                        changed.shrinks = count_missing(&leadership.isr, &isr);
                        changed.expands = count_missing(&isr, &leadership.isr);
                        leadership.replicas = replicas;
                        leadership.isr = isr;
                        leadership.lag_max = lag_max;
                        leadership.isr_change_sent = None;
                        self.hw_moved.notify_waiters();
                        return Ok(changed);
                    }
                }
                // Nothing appends meanwhile: the role still refuses produces.
                let start_offset = self.log.log_end_offset();
                self.begin_epoch(epoch, start_offset).await?;
                *self.role.borrow_mut() = Role::Leader(Leadership {
                    epoch,
                    replicas,
                    isr,
                    start_offset,
                    lag_max,
                    followers: BTreeMap::new(),
                    began: Instant::now(),
                    isr_change_sent: None,
                });
                tracing::info!(dir = %self.log.dir().display(), epoch, start_offset, "leading the partition");
            }
            Assignment::Follower { leader, epoch } => {
                let mut role = self.role.borrow_mut();
                if let Role::Follower(following) = &mut *role {
                    if following.epoch == epoch && following.leader == leader {
                        return Ok(changed);
                    }
                }
                *role = Role::Follower(Following {
                    leader,
                    epoch,
                    checked: false,
                });
                tracing::info!(dir = %self.log.dir().display(), leader, epoch, "following the partition's leader");
            }
            Assignment::Leaderless => *self.role.borrow_mut() = Role::Waiting,
        }
        self.hw_moved.notify_waiters();
        self.data_arrived.notify_waiters();
        Ok(changed)
    }

    /// Stores that `epoch` begins at `start_offset`, if it is new, before anything of it is
    /// appended.
    async fn begin_epoch(&self, epoch: i32, start_offset: i64) -> Result<(), StorageError> {
        let mut cache = self.epochs.borrow().clone();
        if cache.begin(epoch, start_offset) {
            cache.store(&self.disk, self.log.dir()).await?;
            *self.epochs.borrow_mut() = cache;
        }
        Ok(())
    }

    /// A follower's state for its fetcher; None if it does not follow `leader` now.
    pub fn following(&self) -> Option<FollowerState> {
        let role = self.role.borrow();
        let Role::Follower(following) = &*role else {
            return None;
        };
        Some(FollowerState {
            leader: following.leader,
            epoch: following.epoch,
            needs_epoch_check: !following.checked,
            latest_epoch: self
                .epochs
                .borrow()
                .latest()
                .map_or(UNDEFINED_EPOCH, |latest| latest.epoch),
            log_end_offset: self.log.log_end_offset(),
            log_start_offset: self.log.log_start_offset(),
        })
    }

    /// OffsetsForLeaderEpoch, on the leader (or a single node): the largest epoch at or
    /// below `epoch` and where it ended.
    pub fn end_offset_for(
        &self,
        epoch: i32,
        client_epoch: Option<i32>,
    ) -> Result<(i32, i64), ReplicaError> {
        self.check_leader(client_epoch)?;
        let log_end = self.log.log_end_offset();
        Ok(match &*self.role.borrow() {
            // A single node has one epoch, 0.
            Role::Single if epoch >= 0 => (0, log_end),
            Role::Single => (UNDEFINED_EPOCH, -1),
            _ => self.epochs.borrow().end_offset_for(epoch, log_end),
        })
    }

    /// A follower's answer from the leader's epochs (epoch and where the leader's ended):
    /// cuts the local log where it departs from the leader's, and marks the tail checked.
    /// Only the partition's fetcher appends to a follower, so nothing appends meanwhile.
    pub async fn truncate_to_leader(
        &self,
        in_epoch: i32,
        leader_epoch: i32,
        leader_end: i64,
    ) -> Result<i64, PartitionError> {
        let log_end = self.log.log_end_offset();
        let end = if leader_epoch == UNDEFINED_EPOCH {
            // The leader has no epoch this old: keep only what was committed.
            self.high_watermark.get().min(log_end)
        } else {
            let (_, own_end) = self.epochs.borrow().end_offset_for(leader_epoch, log_end);
            leader_end.min(own_end).min(log_end)
        };
        let end = end.max(self.log.log_start_offset());
        if end < log_end {
            tracing::warn!(dir = %self.log.dir().display(), from = end, to = log_end, "cutting a tail the leader does not have");
            self.log.truncate_to(end).await?;
            let mut cache = self.epochs.borrow().clone();
            if cache.truncate_to(end) {
                cache.store(&self.disk, self.log.dir()).await?;
                *self.epochs.borrow_mut() = cache;
            }
            // Producer state is rebuilt from what is left.
            *self.producers.borrow_mut() = None;
            self.high_watermark.set(self.high_watermark.get().min(end));
        }
        if let Role::Follower(following) = &mut *self.role.borrow_mut() {
            if following.epoch == in_epoch {
                following.checked = true;
            }
        }
        Ok(self.log.log_end_offset())
    }

    /// A follower appends batches from its leader as they are (offsets and epochs), each
    /// only at the log end, and waits until they are written (a follower reports as its log
    /// end only what reached the OS). A new epoch is stored before its first batch.
    pub async fn append_replicated(
        &self,
        batches: Vec<(BytesMut, BatchHeader)>,
    ) -> Result<usize, PartitionError> {
        let count = batches.len();
        for appended in self.begin_replicated_append(batches).await? {
            appended.wait().await?;
        }
        Ok(count)
    }

    /// [`Self::append_replicated`] without the wait: the batches are in the log, and each
    /// returned wait ends when its batch is written. A fetcher appends every partition of a
    /// fetch answer this way before it waits for any, so their writes go out together.
    pub async fn begin_replicated_append(
        &self,
        batches: Vec<(BytesMut, BatchHeader)>,
    ) -> Result<Vec<Appended>, PartitionError> {
        let mut waits: Vec<Appended> = Vec::with_capacity(batches.len());
        for (bytes, header) in batches {
            let log_end = self.log.log_end_offset();
            if header.base_offset != log_end {
                return Err(PartitionError::Replica(ReplicaError::OutOfOrder {
                    batch: header.base_offset,
                    log_end,
                }));
            }
            if header.partition_leader_epoch >= 0 {
                self.begin_epoch(header.partition_leader_epoch, header.base_offset)
                    .await?;
            }
            let stored = self
                .log
                .append_validated(bytes, header, Ack::Written)
                .await?;
            if header.producer_id >= 0 {
                if let Some(states) = self.producers.borrow_mut().as_mut() {
                    states.record(&header, stored.base_offset);
                }
            }
            waits.push(stored);
        }
        Ok(waits)
    }

    /// The leader does not have this follower's fetch offset: its tail is checked against
    /// the leader's epochs again before the next fetch.
    pub fn recheck_epochs(&self) {
        if let Role::Follower(following) = &mut *self.role.borrow_mut() {
            following.checked = false;
        }
    }

    /// A follower learned the leader's high watermark.
    pub fn set_leader_high_watermark(&self, leader_high_watermark: i64) {
        let value = leader_high_watermark.min(self.log.log_end_offset());
        if value > self.high_watermark.get() {
            self.high_watermark.set(value);
        }
    }
}

/// ISR members of `before` not in `after`.
fn count_missing(before: &[i32], after: &[i32]) -> u64 {
    before
        .iter()
        .filter(|replica| !after.contains(replica))
        .count() as u64
}

impl Leadership {
    /// The ISR's size counting only the followers that caught up within the lag bound
    /// (and the leader): an ISR member out of touch longer still counts for the high
    /// watermark until the controller takes it out, but not for `min.insync.replicas`, so
    /// acks=all is refused rather than left to hang when the controller cannot be reached
    /// to shrink the ISR (two of three brokers lost take the quorum with them).
    fn isr_in_touch(&self, me: i32) -> usize {
        let now = Instant::now();
        self.isr
            .iter()
            .filter(|replica| {
                **replica == me || {
                    let caught_up = self
                        .followers
                        .get(replica)
                        .map_or(self.began, |progress| progress.last_caught_up);
                    now.saturating_duration_since(caught_up) <= self.lag_max
                }
            })
            .count()
    }
}

/// A client's leader epoch against the partition's: older is fenced, newer unknown here.
fn check_epoch(client_epoch: Option<i32>, current: i32) -> Result<(), ReplicaError> {
    match client_epoch {
        Some(asked) if asked >= 0 && asked < current => {
            Err(ReplicaError::FencedEpoch { asked, current })
        }
        Some(asked) if asked > current => Err(ReplicaError::UnknownEpoch { asked, current }),
        _ => Ok(()),
    }
}

/// Stamps a leader's epoch on a batch it is about to append (not covered by the CRC).
pub(super) fn stamp_epoch(bytes: &mut BytesMut, header: &mut BatchHeader, epoch: i32) {
    record_batch::patch_leader_epoch(bytes, epoch);
    header.partition_leader_epoch = epoch;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::rc::Rc;

    use protocol::record_batch::RecordBatchBuilder;

    use super::*;
    use crate::io::{Backend, Disk};
    use crate::partition::{Replication, ValidBatch};
    use crate::storage::LogConfig;

    const LAG: Duration = Duration::from_secs(30);

    async fn open(dir: std::path::PathBuf, node_id: i32) -> LocalPartition {
        let settings = crate::topic_config::topic_settings(&LogConfig::default(), &BTreeMap::new())
            .expect("default settings");
        LocalPartition::open(
            Disk::new(Backend::Uring),
            dir,
            settings,
            uuid::Uuid::nil(),
            Rc::new(tokio::sync::Notify::new()),
            Replication::Cluster { node_id },
        )
        .await
        .expect("open")
    }

    fn leader(epoch: i32, isr: &[i32]) -> Assignment {
        Assignment::Leader {
            epoch,
            replicas: vec![1, 2],
            isr: isr.to_vec(),
            lag_max: LAG,
        }
    }

    /// Appends one record per value as a client would (acks=all), durable on return.
    async fn produce(partition: &LocalPartition, values: &[&str]) -> Vec<i64> {
        let mut offsets = Vec::new();
        for value in values {
            let mut builder = RecordBatchBuilder::new(1_700_000_000_000);
            builder.push(None, Some(value.as_bytes()), 1_700_000_000_000);
            let bytes = BytesMut::from(&builder.finish()[..]);
            let header = record_batch::validate_batch(&bytes, 1 << 20).expect("valid");
            let appended = partition
                .append(vec![ValidBatch { bytes, header }], Ack::Durable)
                .await
                .expect("appended");
            offsets.push(appended.base_offset);
            for wait in appended.waits {
                wait.wait().await.expect("durable");
            }
        }
        offsets
    }

    /// What `from` holds from `offset` on, as a follower receives it.
    async fn batches_from(from: &LocalPartition, offset: i64) -> Vec<(BytesMut, BatchHeader)> {
        let read = from.log.read(offset, 1 << 20).await.expect("read");
        read.chunks
            .iter()
            .flat_map(|chunk| {
                let mut at = 0;
                let mut batches = Vec::new();
                while let Ok(header) = BatchHeader::parse(&chunk[at..]) {
                    let end = at + header.total_bytes();
                    batches.push((BytesMut::from(&chunk[at..end]), header));
                    at = end;
                }
                batches
            })
            .collect()
    }

    #[test]
    fn the_high_watermark_waits_for_the_isr_and_a_returning_leader_cuts_its_divergent_tail() {
        crate::io::block_on(Backend::Uring, async {
            let temp = tempfile::tempdir().unwrap();
            let a = open(temp.path().join("a"), 1).await;
            let b = open(temp.path().join("b"), 2).await;
            a.assign(leader(0, &[1, 2])).await.unwrap();
            b.assign(Assignment::Follower {
                leader: 1,
                epoch: 0,
            })
            .await
            .unwrap();
            assert_eq!(
                b.epoch_for_append(Ack::Written),
                Err(ReplicaError::NotLeader { leader: 1 })
            );
            assert_eq!(produce(&a, &["a0", "a1", "a2"]).await, vec![0, 1, 2]);
            // Durable on the leader, but the follower has not fetched: nothing committed.
            assert_eq!(a.high_watermark(), 0);
            // It fetches from 0, appends two of the batches, fetches from 2.
            a.follower_fetched(2, 0, Some(0)).unwrap();
            let sent = batches_from(&a, 0).await;
            assert_eq!(sent[0].1.partition_leader_epoch, 0, "stamped by the leader");
            b.append_replicated(sent.into_iter().take(2).collect())
                .await
                .unwrap();
            a.follower_fetched(2, 2, Some(0)).unwrap();
            assert_eq!(a.high_watermark(), 2);
            let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
            assert_eq!(
                a.wait_replicated(2, Some(0), deadline, LAG).await,
                Err(ReplicaError::TimedOut(LAG)),
                "offset 2 is not on the follower"
            );
            assert_eq!(
                a.follower_fetched(2, 2, Some(1)),
                Err(ReplicaError::UnknownEpoch {
                    asked: 1,
                    current: 0
                })
            );

            // The leader dies; the follower leads epoch 1 and takes two records of its own.
            b.assign(leader(1, &[2])).await.unwrap();
            assert_eq!(produce(&b, &["b2", "b3"]).await, vec![2, 3]);
            assert_eq!(b.high_watermark(), 4, "alone in the ISR");
            assert_eq!(
                b.end_offset_for(0, Some(0)),
                Err(ReplicaError::FencedEpoch {
                    asked: 0,
                    current: 1
                })
            );

            // The old leader returns as a follower: its offset 2 (epoch 0) is not the new
            // leader's, which says epoch 0 ended at 2.
            a.assign(Assignment::Follower {
                leader: 2,
                epoch: 1,
            })
            .await
            .unwrap();
            let state = a.following().unwrap();
            assert!(state.needs_epoch_check);
            assert_eq!(state.latest_epoch, 0);
            let (epoch, end) = b.end_offset_for(state.latest_epoch, Some(1)).unwrap();
            assert_eq!((epoch, end), (0, 2));
            assert_eq!(a.truncate_to_leader(1, epoch, end).await.unwrap(), 2);
            assert!(!a.following().unwrap().needs_epoch_check);
            a.append_replicated(batches_from(&b, 2).await)
                .await
                .unwrap();
            // A follower's append is answered once written; its fdatasync may still run, and
            // its log serves only what is durable.
            a.log.flush().await.unwrap();
            let values: Vec<(i64, i32)> = batches_from(&a, 0)
                .await
                .iter()
                .map(|(_, header)| (header.base_offset, header.partition_leader_epoch))
                .collect();
            assert_eq!(values, vec![(0, 0), (1, 0), (2, 1), (3, 1)]);
            assert_eq!(
                a.end_offset_for(1, None).err(),
                Some(ReplicaError::NotLeader { leader: 2 })
            );
            assert_eq!(a.epochs.borrow().end_offset_for(0, 4), (0, 2));
            assert_eq!(a.epochs.borrow().end_offset_for(1, 4), (1, 4));
        })
        .unwrap();
    }
}
