//! Where a CLI request goes in a cluster: a partition's requests to its leader, a group's to
//! its coordinator, as a Kafka client routes them. A single broker is its own leader and
//! coordinator, so there everything goes to the one connection.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{FindCoordinatorRequest, MetadataRequest};
use kafka_protocol::protocol::StrBytes;
use protocol::client::{Client, ClientError};
use protocol::ErrorCode;

use super::topic::metadata;
use super::{check, client_error, connect};

/// How long a request is retried while leadership or a coordinator moves (an election
/// takes a session timeout, a few seconds).
const SETTLE: Duration = Duration::from_secs(15);
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Connections to the brokers of one cluster, opened as requests need them.
pub struct Brokers {
    bootstrap: Client,
    /// Every live broker's address, by node id, as the last Metadata listed them.
    addresses: BTreeMap<i32, String>,
    open: BTreeMap<i32, Client>,
}

impl Brokers {
    /// Connects to the first of `list` that answers and learns the cluster's brokers.
    pub async fn connect(list: &str) -> Result<Brokers, String> {
        Brokers::over(connect(list).await?).await
    }

    /// Learns the cluster's brokers through `bootstrap`, an open connection.
    pub async fn over(bootstrap: Client) -> Result<Brokers, String> {
        let mut brokers = Brokers {
            bootstrap,
            addresses: BTreeMap::new(),
            open: BTreeMap::new(),
        };
        brokers.refresh_brokers().await?;
        Ok(brokers)
    }

    async fn refresh_brokers(&mut self) -> Result<(), String> {
        let request = MetadataRequest::default()
            .with_topics(Some(Vec::new()))
            .with_allow_auto_topic_creation(false);
        let response = self.bootstrap.send(&request).await.map_err(client_error)?;
        self.addresses = response
            .brokers
            .iter()
            .map(|broker| (broker.node_id.0, format!("{}:{}", broker.host, broker.port)))
            .collect();
        Ok(())
    }

    /// The connection every request without a home goes to.
    pub fn bootstrap(&mut self) -> &mut Client {
        &mut self.bootstrap
    }

    /// Node ids of the live brokers.
    pub fn node_ids(&self) -> Vec<i32> {
        self.addresses.keys().copied().collect()
    }

    /// The connection to broker `node`. A lone broker is the bootstrap connection (its
    /// advertised address may not be the one this command was given).
    pub async fn to(&mut self, node: i32) -> Result<&mut Client, String> {
        if self.addresses.len() <= 1 {
            return Ok(&mut self.bootstrap);
        }
        if !self.open.contains_key(&node) {
            if !self.addresses.contains_key(&node) {
                self.refresh_brokers().await?;
            }
            let address = self
                .addresses
                .get(&node)
                .ok_or_else(|| format!("broker {node} is not among the live brokers"))?;
            let client = Client::connect(address, "ringlog-cli")
                .await
                .map_err(|error| format!("broker {node}: {error}"))?;
            self.open.insert(node, client);
        }
        Ok(self.open.get_mut(&node).expect("opened above"))
    }

    /// Forgets the connection to `node` (it failed; the next request opens a new one).
    pub fn drop_connection(&mut self, node: i32) {
        self.open.remove(&node);
    }

    /// The topic's metadata, its error checked.
    pub async fn topic(&mut self, name: &str, what: &str) -> Result<MetadataResponseTopic, String> {
        let response = metadata(&mut self.bootstrap, Some(name)).await?;
        let topic = response
            .topics
            .into_iter()
            .next()
            .ok_or("the broker returned no topic")?;
        check(topic.error_code, what, None)?;
        Ok(topic)
    }

    /// Each of `partitions` of `topic` by its leader, waiting while one has none.
    pub async fn leaders(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, Vec<i32>>, String> {
        let deadline = Instant::now() + SETTLE;
        // A lone broker names no leader for a partition it cannot serve (offline): it is
        // still the one to ask, and answers with the partition's own error.
        let lone =
            (self.addresses.len() <= 1).then(|| self.node_ids().first().copied().unwrap_or(-1));
        loop {
            let described = self
                .topic(topic, &format!("cannot find the leaders of '{topic}'"))
                .await?;
            let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
            let mut leaderless = None;
            for partition in partitions {
                match described
                    .partitions
                    .iter()
                    .find(|p| p.partition_index == *partition)
                {
                    None => {
                        return Err(format!("partition {partition} does not exist in '{topic}'"))
                    }
                    Some(p) if p.leader_id.0 < 0 => match lone {
                        Some(node) => by_leader.entry(node).or_default().push(*partition),
                        None => leaderless = Some(*partition),
                    },
                    Some(p) => by_leader.entry(p.leader_id.0).or_default().push(*partition),
                }
            }
            match leaderless {
                None => return Ok(by_leader),
                Some(partition) if Instant::now() >= deadline => {
                    return Err(format!(
                        "{topic}-{partition} has no leader after {SETTLE:?}"
                    ))
                }
                Some(_) => tokio::time::sleep(RETRY_PAUSE).await,
            }
        }
    }

    /// (partition, offset) at `timestamp` (-1 latest, -2 earliest, else a time) for each of
    /// `partitions`, each asked of its leader; retried while a leadership moves.
    pub async fn offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<Vec<(i32, i64)>, String> {
        let deadline = Instant::now() + SETTLE;
        'retry: loop {
            let mut found = Vec::new();
            for (leader, owned) in self.leaders(topic, partitions).await? {
                let answer = match self.to(leader).await {
                    Ok(client) => client.list_offsets(topic, &owned, timestamp).await,
                    Err(error) if Instant::now() < deadline => {
                        tracing::debug!("{error}; retrying");
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue 'retry;
                    }
                    Err(error) => return Err(error),
                };
                match answer {
                    Ok(offsets) => found.extend(offsets),
                    Err(error) if moved(&error) && Instant::now() < deadline => {
                        self.drop_connection(leader);
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue 'retry;
                    }
                    Err(error) => return Err(error.to_string()),
                }
            }
            found.sort();
            return Ok(found);
        }
    }

    /// The node id of `group`'s coordinator and the connection to it, waiting while one is
    /// being elected or is loading the group's offsets.
    pub async fn coordinator(&mut self, group: &str) -> Result<(i32, &mut Client), String> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let request = FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(group.to_string()))
                .with_key_type(0);
            // v0-3 answer one key; v4 batches them, which a CLI has no use for.
            let version = self
                .bootstrap
                .version_for::<FindCoordinatorRequest>(3)
                .map_err(client_error)?;
            let response = self
                .bootstrap
                .send_version(&request, version)
                .await
                .map_err(client_error)?;
            let retriable = [
                ErrorCode::CoordinatorNotAvailable,
                ErrorCode::CoordinatorLoadInProgress,
                ErrorCode::NotCoordinator,
            ]
            .iter()
            .any(|code| code.code() == response.error_code);
            if retriable && Instant::now() < deadline {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
            check(
                response.error_code,
                &format!("cannot find the coordinator of group '{group}'"),
                response.error_message.as_deref(),
            )?;
            let node = response.node_id.0;
            self.addresses
                .entry(node)
                .or_insert_with(|| format!("{}:{}", response.host, response.port));
            let client = self.to(node).await?;
            return Ok((node, client));
        }
    }
}

/// Whether a refused request failed because its partition's leadership moved (or its
/// leader's connection broke), so asking again after a metadata refresh can succeed.
pub fn moved(error: &ClientError) -> bool {
    match error {
        ClientError::Refused { code, .. } => is_moved(*code),
        ClientError::Io(_) | ClientError::Connect { .. } | ClientError::Timeout(_) => true,
        _ => false,
    }
}

/// NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, FENCED/UNKNOWN_LEADER_EPOCH: the client
/// asked a broker that no longer leads the partition.
pub fn is_moved(code: i16) -> bool {
    [
        ErrorCode::NotLeaderOrFollower,
        ErrorCode::LeaderNotAvailable,
        ErrorCode::FencedLeaderEpoch,
        ErrorCode::UnknownLeaderEpoch,
    ]
    .iter()
    .any(|known| known.code() == code)
}
