//! Cluster mode: a controller quorum embedded in every broker, as KRaft's combined mode is.
//!
//! Each broker started with `--voters` runs a Raft node (openraft) on a thread of its own,
//! beside the shards. The quorum's replicated log holds the cluster's metadata
//! ([`state::ClusterState`]: the cluster id, broker registrations and whether each broker is
//! fenced); every broker registers itself through it and heartbeats to the leader, which
//! fences a broker that stays quiet for the session timeout and unfences it when it is heard
//! again. Topics live there too: their partitions' replicas, leader and epoch. The shards
//! read it all as a [`ClusterView`] and submit commands through a [`ClusterHandle`].
//! A broker without `--voters` has none of this and runs as a single node.

mod controller;
pub mod log_store;
pub mod rpc;
pub mod state;
pub mod types;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

pub use controller::{Controller, ControllerError, Endpoint};
pub use state::BrokerState;
pub use types::{BrokerRegistration, Command, PartitionRecord, Reply, TopicRecord, NO_LEADER};

/// The controller's directory inside the data directory.
pub const CONTROLLER_DIR: &str = "__cluster_metadata";

/// How a broker takes part in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This broker's id, also its controller's (`--node-id`).
    pub node_id: i32,
    /// Where this controller listens for the others (`--cluster-listen`).
    pub cluster_listen: SocketAddr,
    /// The controller quorum, id to address (`--voters`, like `controller.quorum.voters`).
    pub voters: BTreeMap<i32, String>,
    /// Rack of this broker (`--rack`, `broker.rack`).
    pub rack: Option<String>,
    /// How often a broker heartbeats to the controller leader
    /// (`broker.heartbeat.interval.ms`).
    pub heartbeat_interval: Duration,
    /// A broker not heard from for this long is fenced (`broker.session.timeout.ms`).
    pub session_timeout: Duration,
    /// A follower not caught up for this long leaves the ISR (`replica.lag.time.max.ms`).
    pub replica_lag_time_max: Duration,
}

/// Parses `--voters`: `ID@HOST:PORT` separated by commas.
pub fn parse_voters(text: &str) -> Result<BTreeMap<i32, String>, String> {
    let mut voters = BTreeMap::new();
    for voter in text
        .split(',')
        .map(str::trim)
        .filter(|voter| !voter.is_empty())
    {
        let (id, address) = voter
            .split_once('@')
            .ok_or_else(|| format!("voter '{voter}' is not ID@HOST:PORT"))?;
        let id: i32 = id
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| format!("voter '{voter}' has no valid node id (a number >= 0)"))?;
        let port_ok = address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(format!("voter '{voter}' has no HOST:PORT after the '@'"));
        }
        if let Some((other, _)) = voters.iter().find(|(_, known)| *known == address) {
            // Two voters on one address: a controller would take its own messages for
            // another voter's.
            return Err(format!(
                "voters {other} and {id} have the same address {address} in --voters"
            ));
        }
        if voters.insert(id, address.to_string()).is_some() {
            return Err(format!("node id {id} is given twice in --voters"));
        }
    }
    if voters.is_empty() {
        return Err("--voters names no voter".to_string());
    }
    Ok(voters)
}

/// What the shards know of the cluster: the committed metadata and who leads the quorum.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub cluster_id: Option<String>,
    /// The controller leader's node id, if there is one now.
    pub controller_id: Option<i32>,
    /// Every registered broker, fenced ones included, by id.
    pub brokers: Vec<BrokerState>,
    pub topics: BTreeMap<String, TopicRecord>,
    /// Log index of the last command in this view (0: none yet, as at start-up).
    pub applied_index: u64,
}

impl ClusterView {
    /// Brokers clients may be sent to.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerState> {
        self.brokers.iter().filter(|broker| !broker.fenced)
    }

    pub fn is_live(&self, id: i32) -> bool {
        self.live_brokers()
            .any(|broker| broker.registration.id == id)
    }

    pub fn topic_by_id(&self, id: uuid::Uuid) -> Option<&TopicRecord> {
        self.topics.values().find(|topic| topic.id == id)
    }
}

/// A command for the quorum and where its outcome goes.
type Submitted = (Command, oneshot::Sender<Result<Reply, rpc::WriteRefused>>);

/// Commands waiting for the controller thread, at most.
const SUBMITTED_MAX: usize = 256;

/// The shards' side of the controller: the latest [`ClusterView`] (replaced whole by the
/// controller thread) and a way to have a command written.
#[derive(Debug)]
pub struct ClusterHandle {
    current: watch::Sender<Arc<ClusterView>>,
    commands: mpsc::Sender<Submitted>,
    /// The block of producer ids this broker gives out: next, end (exclusive).
    producer_ids: std::sync::Mutex<(i64, i64)>,
    node_id: i32,
    /// This process's registration (see [`BrokerRegistration::incarnation`]).
    incarnation: uuid::Uuid,
}

impl ClusterHandle {
    fn new(node_id: i32, incarnation: uuid::Uuid) -> (ClusterHandle, mpsc::Receiver<Submitted>) {
        let (commands, submitted) = mpsc::channel(SUBMITTED_MAX);
        let (current, _) = watch::channel(Arc::new(ClusterView::default()));
        let handle = ClusterHandle {
            current,
            commands,
            producer_ids: std::sync::Mutex::new((0, 0)),
            node_id,
            incarnation,
        };
        (handle, submitted)
    }

    pub fn snapshot(&self) -> Arc<ClusterView> {
        self.current.borrow().clone()
    }

    /// Whether `view` has applied this process's own registration: a view from before it
    /// (as at start-up, while the log is applied again) may name this broker leader of
    /// partitions it no longer leads.
    pub fn caught_up(&self, view: &ClusterView) -> bool {
        view.brokers.iter().any(|broker| {
            broker.registration.id == self.node_id
                && broker.registration.incarnation == self.incarnation
        })
    }

    /// Every new view, from any thread.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.current.subscribe()
    }

    fn replace(&self, view: ClusterView) {
        self.current.send_replace(Arc::new(view));
    }

    /// A producer id no other broker gives out: from this broker's block, and a new block
    /// from the quorum when it is used up.
    pub async fn next_producer_id(&self) -> Result<i64, rpc::WriteRefused> {
        loop {
            {
                let mut block = self
                    .producer_ids
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if block.0 < block.1 {
                    block.0 += 1;
                    return Ok(block.0 - 1);
                }
            }
            let broker = self.node_id;
            match self.submit(Command::AllocateProducerIds { broker }).await? {
                Reply::ProducerIds { first, count } => {
                    let mut block = self
                        .producer_ids
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    // Another caller may have fetched a block meanwhile: the newer wins.
                    if first >= block.1 {
                        *block = (first, first + count);
                    }
                }
                other => {
                    return Err(rpc::WriteRefused::Failed(format!(
                        "the controller answered {other:?} to a producer id request"
                    )))
                }
            }
        }
    }

    /// Has the quorum write `command` (through its leader, wherever it is).
    pub async fn submit(&self, command: Command) -> Result<Reply, rpc::WriteRefused> {
        let (reply, outcome) = oneshot::channel();
        let gone = || rpc::WriteRefused::Failed("the controller has stopped".to_string());
        self.commands
            .send((command, reply))
            .await
            .map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }
}

#[cfg(test)]
mod tests {
    use super::parse_voters;

    #[test]
    fn voters_parse_and_bad_ones_are_named() {
        let voters = parse_voters("1@127.0.0.1:9093, 2@host-b:9093,3@[::1]:9093").unwrap();
        assert_eq!(voters.len(), 3);
        assert_eq!(voters[&2], "host-b:9093");
        assert_eq!(voters[&3], "[::1]:9093");
        assert!(parse_voters("1@a:1,1@b:2").unwrap_err().contains("twice"));
        assert_eq!(
            parse_voters("1@a:1,2@b:2,3@a:1").unwrap_err(),
            "voters 1 and 3 have the same address a:1 in --voters"
        );
        assert!(parse_voters("x@a:1").unwrap_err().contains("node id"));
        assert!(parse_voters("1@a").unwrap_err().contains("HOST:PORT"));
        assert!(parse_voters("1:a:1").unwrap_err().contains("ID@HOST:PORT"));
        assert!(parse_voters("").unwrap_err().contains("no voter"));
    }
}
