//! How controllers talk: one TCP connection per peer and purpose, frames of a u32 (BE)
//! length and the JSON of a [`Request`] or [`Response`], one request answered at a time.
//! openraft's RPCs (append, vote, snapshot chunks) travel this way, and so do a broker's
//! heartbeats and the commands a follower forwards to the leader.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use super::types::{Command, NodeId, Reply, TypeConfig};

/// Largest frame sent or accepted (snapshot chunks are cut well below it).
pub const MAX_FRAME_BYTES: usize = 16 << 20;
/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A command for the leader to write, from a controller that is not the leader.
    Write(Command),
    /// A broker is alive (sent to the leader).
    Heartbeat {
        id: i32,
        incarnation: Uuid,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Write(Result<Reply, WriteRefused>),
    Heartbeat(HeartbeatReply),
}

/// Why a forwarded command was not written.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum WriteRefused {
    #[error("not the controller leader (the leader is {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("the controller could not write it: {0}")]
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeartbeatReply {
    Alive,
    /// This controller is not the leader.
    NotLeader {
        leader: Option<NodeId>,
    },
    /// No registration of that incarnation: register again.
    Unknown,
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> std::io::Result<()> {
    let body = serde_json::to_vec(value)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(std::io::Error::other(format!(
            "controller frame of {} bytes is over the {MAX_FRAME_BYTES}-byte limit",
            body.len()
        )));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await
}

/// Reads one frame; `Ok(None)` when the peer closed the connection between frames.
pub async fn read_frame<T: DeserializeOwned>(stream: &mut TcpStream) -> std::io::Result<Option<T>> {
    let mut length = [0u8; 4];
    match stream.read_exact(&mut length).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_FRAME_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("controller frame of {length} bytes is over the {MAX_FRAME_BYTES}-byte limit"),
        ));
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    let value = serde_json::from_slice(&body)
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))?;
    Ok(Some(value))
}

/// A connection to one peer, opened when first needed and again after a failure.
pub struct Peer {
    address: String,
    stream: Option<TcpStream>,
}

impl Peer {
    pub fn new(address: String) -> Peer {
        Peer {
            address,
            stream: None,
        }
    }

    /// Sends `request` and waits up to `timeout` for its answer.
    pub async fn call(
        &mut self,
        request: &Request,
        timeout: Duration,
    ) -> std::io::Result<Response> {
        let exchanged = tokio::time::timeout(timeout, self.exchange(request)).await;
        let result = match exchanged {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from {} within {timeout:?}", self.address),
            )),
        };
        if result.is_err() {
            // The stream may hold half a frame: start over on the next call.
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self, request: &Request) -> std::io::Result<Response> {
        if self.stream.is_none() {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "cannot connect to {} within {CONNECT_TIMEOUT:?}",
                            self.address
                        ),
                    )
                })??;
            refuse_self_connection(&stream, &self.address)?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        write_frame(stream, request).await?;
        read_frame(stream).await?.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} closed the connection", self.address),
            )
        })
    }
}

/// Refuses a TCP self-connection: connecting to a local port nobody listens on can be given
/// that same port as its source, and the connection then reaches itself (what it sends comes
/// back as if the peer had answered), holding the port the peer is about to listen on.
fn refuse_self_connection(stream: &TcpStream, address: &str) -> std::io::Result<()> {
    if stream.local_addr()? == stream.peer_addr()? {
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!("{address}: nothing listens there (the connection reached itself)"),
        ));
    }
    Ok(())
}

/// openraft's network: a [`PeerClient`] per target it replicates to or asks for votes.
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            peer: Peer::new(node.addr.clone()),
        }
    }
}

pub struct PeerClient {
    target: NodeId,
    peer: Peer,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerClient {
    /// A failed exchange makes openraft back off before it tries this peer again.
    async fn call(
        &mut self,
        request: Request,
        option: &RPCOption,
    ) -> Result<Response, Unreachable> {
        self.peer
            .call(&request, option.hard_ttl())
            .await
            .map_err(|error| Unreachable::new(&error))
    }

    /// An answer of the wrong kind: the peer speaks another version of this protocol.
    fn unexpected(&self, response: Response) -> NetworkError {
        let error = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("node {} answered with {response:?}", self.target),
        );
        NetworkError::new(&error)
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.call(Request::AppendEntries(rpc), &option).await? {
            Response::AppendEntries(Ok(response)) => Ok(response),
            Response::AppendEntries(Err(error)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, error)))
            }
            other => Err(RPCError::Network(self.unexpected(other))),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self.call(Request::InstallSnapshot(rpc), &option).await? {
            Response::InstallSnapshot(Ok(response)) => Ok(response),
            Response::InstallSnapshot(Err(error)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, error)))
            }
            other => Err(RPCError::Network(self.unexpected(other))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self.call(Request::Vote(rpc), &option).await? {
            Response::Vote(Ok(response)) => Ok(response),
            Response::Vote(Err(error)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, error)))
            }
            other => Err(RPCError::Network(self.unexpected(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_that_reached_itself_is_refused() {
        // A socket bound to a port and connected to that same port reaches itself (TCP
        // simultaneous open), as a connect to an unlistened local port may by chance.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let own = socket.local_addr().unwrap();
        let stream = socket.connect(own).await.expect("a self-connection");
        let refused = refuse_self_connection(&stream, &own.to_string()).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(refused.to_string().contains("reached itself"), "{refused}");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stream = TcpStream::connect(address).await.unwrap();
        refuse_self_connection(&stream, &address.to_string()).unwrap();
    }
}
