//! One client connection: a pipeline that reads, decodes and dispatches requests while
//! earlier ones wait for durability, and writes the answers in request order.
//!
//! Two tasks share the connection. The reader splits frames, decodes them and starts each
//! Produce as a task of its own, so a producer with several requests in flight gets them
//! appended one after another (in the order they were sent: see `api::produce`) and their
//! fdatasyncs shared, instead of one full write + sync round each. Every other request is a
//! barrier, as in Kafka, which handles a connection's requests one at a time: it waits until
//! everything before it has finished, runs alone, and only then is the next frame
//! dispatched (an OffsetFetch never overtakes the OffsetCommit sent before it).
//!
//! The writer takes the started requests in order and writes each answer when it is ready.
//!
//! Bounds: at most `requests_in_flight_max` requests and `in_flight_bytes_max` bytes of
//! request frames are dispatched and not yet answered; past either the reader stops
//! reading (backpressure on the socket, not buffering). A single frame larger than the
//! byte budget is admitted alone. Reading itself holds a chunk of `READ_CHUNK_BYTES` while
//! idle, and at most one frame (`socket.request.max.bytes`), whose size is checked from its
//! prefix before its body is read. Broker-wide, the bytes of every frame being read or
//! awaiting its answer count against `queued.max.request.bytes`: a frame's share is taken
//! once its size is known and before its body is read, so past the budget connections stop
//! reading until answers free some. Connections past `max.connections` or
//! `max.connections.per.ip` are closed as they arrive.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use protocol::frame;
use protocol::request::{decode_request, Request, RequestError};
use protocol::response::{encode_bare_error, encode_fetch_response, encode_response, EncodeError};
use protocol::{versions, ErrorCode};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

use super::budget::Share;
use crate::api;
use crate::io::net::Connection;
use crate::shard::Shard;

/// Bytes read at a time while waiting for requests.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Largest single read while a big frame arrives.
const READ_CHUNK_BYTES_MAX: usize = 1024 * 1024;

/// Why a connection closes on our side.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Api(#[from] api::HandlerError),
    #[error("cannot encode the response: {0}")]
    Encode(String),
    #[error("undecodable request: {0}")]
    Request(#[from] RequestError),
    #[error("write failed: {0}")]
    Write(#[source] std::io::Error),
    #[error("a request task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A request dispatched and not yet answered: its answer (`None`: nothing to send), and
/// the share of the byte budget its frame holds until then.
struct InFlight {
    answer: Answer,
    _slot: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
    _queued: Share,
}

/// A response frame as the chunks to write, in order (a Fetch response's records are
/// chunks of their own, shared with the log's, rather than copied into the frame).
type Frame = Vec<Bytes>;

enum Answer {
    Ready(Result<Option<Frame>, ConnectionError>),
    Running(tokio::task::JoinHandle<Result<Option<Frame>, ConnectionError>>),
}

/// Requests dispatched and not yet finished, so that a barrier can wait for none.
#[derive(Default)]
struct Running {
    count: Cell<usize>,
    idle: Notify,
}

impl Running {
    fn start(self: &Rc<Running>) -> RunningGuard {
        self.count.set(self.count.get() + 1);
        RunningGuard(self.clone())
    }

    async fn wait_idle(&self) {
        while self.count.get() > 0 {
            self.idle.notified().await;
        }
    }
}

struct RunningGuard(Rc<Running>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        let count = self.0.count.get() - 1;
        self.0.count.set(count);
        if count == 0 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Serves one connection on this shard; `_placed` holds its slot in the shards' connection
/// counts until it ends.
pub async fn serve(
    shard: Rc<Shard>,
    connection: Connection,
    peer: SocketAddr,
    _placed: crate::server::placement::Placed,
) {
    let _admitted = match shard.context.connections.admit(peer.ip()) {
        Ok(admitted) => admitted,
        Err(refused) => {
            shard.context.metrics.connection_refused(shard.id);
            if let Some(suppressed) = refusal_log_allowed() {
                tracing::warn!(%peer, reason = %refused, suppressed, "refusing connection");
            }
            connection.shutdown();
            return;
        }
    };
    tracing::debug!(shard = shard.id, %peer, "connection opened");
    let metrics = shard.context.metrics.clone();
    metrics.connections_open.fetch_add(1, Ordering::Relaxed);
    metrics.connections_total.fetch_add(1, Ordering::Relaxed);
    let connection = Rc::new(connection);
    let config = &shard.context.config;
    // Requests are admitted by the reader's semaphores, so the queue never holds more.
    let (queue, dispatched) = mpsc::channel(config.requests_in_flight_max.max(1));
    let writer = tokio::task::spawn_local(write_answers(connection.clone(), dispatched, peer));
    read_requests(&shard, &connection, peer, queue).await;
    // The reader is done (peer closed, or an error); the writer answers what was
    // dispatched, then ends.
    let _ = writer.await;
    metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(shard = shard.id, %peer, "connection closed");
}

async fn read_requests(
    shard: &Rc<Shard>,
    connection: &Connection,
    peer: SocketAddr,
    queue: mpsc::Sender<InFlight>,
) {
    let max_request_bytes = shard.context.config.max_request_bytes;
    let budget_bytes = shard
        .context
        .config
        .in_flight_bytes_max
        .clamp(1, u32::MAX as usize);
    let budget = Arc::new(Semaphore::new(budget_bytes));
    let config = &shard.context.config;
    let requests_in_flight_max = config.requests_in_flight_max.max(1);
    let slots = Arc::new(Semaphore::new(requests_in_flight_max));
    let running = Rc::new(Running::default());
    let queued = shard.context.queued_bytes.clone();
    // The broker-wide share of the frame being read, taken once its size is known and
    // before its body is read.
    let mut frame_share: Option<Share> = None;
    let mut buffer = BytesMut::new();
    loop {
        loop {
            match frame::split_frame(&mut buffer, max_request_bytes) {
                Ok(Some(request)) => {
                    // Whole in the first read: already in memory, only charged.
                    let share = frame_share
                        .take()
                        .unwrap_or_else(|| queued.charge(request.len()));
                    let Ok(slot) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let permits = request.len().clamp(1, budget_bytes) as u32;
                    let Ok(bytes) = budget.clone().acquire_many_owned(permits).await else {
                        return;
                    };
                    let answer = dispatch(shard, request, peer, &running).await;
                    let failed = matches!(answer, Answer::Ready(Err(_)));
                    if queue
                        .send(InFlight {
                            answer,
                            _slot: slot,
                            _bytes: bytes,
                            _queued: share,
                        })
                        .await
                        .is_err()
                        || failed
                    {
                        return;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    shard.context.metrics.connection_refused(shard.id);
                    if let Some(suppressed) = refusal_log_allowed() {
                        tracing::warn!(%peer, %error, suppressed, "refusing frame; closing connection");
                    }
                    return;
                }
            }
        }
        // Read what the pending frame still needs, within bounds.
        let pending = match frame::peek_frame_size(&buffer, max_request_bytes) {
            Ok(Some(size)) => (size + frame::SIZE_BYTES).saturating_sub(buffer.len()),
            _ => 0,
        };
        if pending > 0 && frame_share.is_none() {
            // Past the broker-wide budget this waits, not reading, until answers free some.
            frame_share = Some(queued.take(buffer.len() + pending).await);
        }
        // Bytes are read straight into the frame buffer and frames are split off it without
        // a copy (a frame in flight keeps the allocation it was read into alive until it is
        // answered: at most `requests_in_flight_max` reads of up to 1 MiB).
        let want = pending.clamp(READ_CHUNK_BYTES, READ_CHUNK_BYTES_MAX);
        if buffer.is_empty() {
            // Between frames an idle connection holds one small read buffer, not the
            // largest it ever needed.
            buffer = BytesMut::new();
        }
        buffer.reserve(want);
        // A started frame must arrive whole in time; an idle connection (nothing in flight,
        // nothing started) may stay quiet up to connections.max.idle.ms; a connection waiting
        // for its answers has no read deadline.
        let deadline = if !buffer.is_empty() {
            Some((
                config.partial_request_timeout,
                "a started request did not arrive",
            ))
        } else if slots.available_permits() == requests_in_flight_max {
            Some((config.connections_max_idle, "idle"))
        } else {
            None
        };
        let read = connection.read_into(buffer);
        let (result, returned) = match deadline {
            None => read.await,
            Some((limit, why)) => match tokio::time::timeout(limit, read).await {
                Ok(done) => done,
                Err(_) => {
                    // The read is dropped (tokio-uring keeps its buffer until the kernel
                    // lets go); shutting the socket ends it.
                    if let Some(suppressed) = refusal_log_allowed() {
                        tracing::info!(%peer, reason = why, ?limit, suppressed, "closing connection");
                    }
                    connection.shutdown();
                    return;
                }
            },
        };
        buffer = returned;
        match result {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%peer, %error, "connection read failed");
                return;
            }
        }
    }
}

/// Starts one request. A Produce runs as a task of its own; anything else waits for every
/// earlier request to finish and then runs to completion here.
async fn dispatch(
    shard: &Rc<Shard>,
    frame: Bytes,
    peer: SocketAddr,
    running: &Rc<Running>,
) -> Answer {
    let request = match decode_request(frame) {
        Ok(request) => request,
        Err(error) => {
            let answer = refusal(error);
            if answer.is_err() {
                shard.context.metrics.connection_refused(shard.id);
            }
            return Answer::Ready(answer);
        }
    };
    if request.api_key == ApiKey::Produce {
        let guard = running.start();
        let shard = shard.clone();
        return Answer::Running(tokio::task::spawn_local(async move {
            let answer = answer(&shard, request, peer).await;
            drop(guard);
            answer
        }));
    }
    running.wait_idle().await;
    Answer::Ready(answer(shard, request, peer).await)
}

/// Handles a decoded request and encodes its response.
async fn answer(
    shard: &Rc<Shard>,
    request: Request,
    peer: SocketAddr,
) -> Result<Option<Frame>, ConnectionError> {
    let started = std::time::Instant::now();
    let correlation_id = request.header.correlation_id;
    let (api_key, api_version) = (request.api_key, request.api_version);
    let encode_failed = |error: EncodeError| ConnectionError::Encode(error.to_string());
    let response = match api::handle(shard, request, peer).await? {
        Some(api::Response {
            body: ResponseKind::Fetch(body),
            records,
        }) if !records.is_empty() => Some(
            encode_fetch_response(correlation_id, api_version, &body, records)
                .map_err(encode_failed)?,
        ),
        Some(answer) => Some(vec![encode_response(
            correlation_id,
            api_key,
            api_version,
            &answer.body,
        )
        .map_err(encode_failed)?]),
        None => None,
    };
    shard
        .context
        .metrics
        .request_done(shard.id, api_key as i16, started.elapsed());
    Ok(response)
}

/// Writes answers in request order. On the first failure it stops and shuts the socket,
/// which ends the reader too.
async fn write_answers(
    connection: Rc<Connection>,
    mut dispatched: mpsc::Receiver<InFlight>,
    peer: SocketAddr,
) {
    while let Some(in_flight) = dispatched.recv().await {
        let answer = match in_flight.answer {
            Answer::Ready(answer) => answer,
            Answer::Running(task) => task.await.unwrap_or_else(|error| Err(error.into())),
        };
        let written = match answer {
            Ok(Some(response)) => connection
                .write_all_chunks(response)
                .await
                .map_err(ConnectionError::Write),
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        };
        if let Err(reason) = written {
            if let Some(suppressed) = refusal_log_allowed() {
                tracing::info!(%peer, %reason, suppressed, "closing connection");
            }
            dispatched.close();
            connection.shutdown();
            return;
        }
    }
}

/// At most one log line a second (per shard thread) for connections closed over bad input,
/// so a flood of garbage does not flood the log; each line says how many it stood for.
struct LogLimit {
    last: Cell<Option<std::time::Instant>>,
    suppressed: Cell<u64>,
}

impl LogLimit {
    /// `Some(lines suppressed since the last one)` when a line may be written now.
    fn allow(&self) -> Option<u64> {
        let now = std::time::Instant::now();
        match self.last.get() {
            Some(last) if now.duration_since(last) < std::time::Duration::from_secs(1) => {
                self.suppressed.set(self.suppressed.get() + 1);
                None
            }
            _ => {
                self.last.set(Some(now));
                Some(self.suppressed.replace(0))
            }
        }
    }
}

/// `Some(lines suppressed since the last one)` when a line about a refused or closed
/// connection may be written now on this shard thread.
pub(super) fn refusal_log_allowed() -> Option<u64> {
    REFUSALS_LOGGED.with(|limit| limit.allow())
}

thread_local! {
    static REFUSALS_LOGGED: LogLimit = const {
        LogLimit {
            last: Cell::new(None),
            suppressed: Cell::new(0),
        }
    };
}

/// The answer to a request that could not be decoded, or an error to close the connection.
fn refusal(error: RequestError) -> Result<Option<Frame>, ConnectionError> {
    match error {
        // KIP-511: a client newer than us asks ApiVersions with a version we do not know;
        // answer in v0 with UNSUPPORTED_VERSION and our table, and it retries.
        RequestError::UnsupportedVersion {
            api_key: ApiKey::ApiVersions,
            correlation_id,
            ..
        } => {
            let body = ResponseKind::ApiVersions(versions::api_versions_response(
                ErrorCode::UnsupportedVersion,
            ));
            encode_response(correlation_id, ApiKey::ApiVersions, 0, &body)
                .map(|frame| Some(vec![frame]))
                .map_err(|error| ConnectionError::Encode(error.to_string()))
        }
        RequestError::UnsupportedVersion { correlation_id, .. }
        | RequestError::UnknownApiKey { correlation_id, .. }
        | RequestError::UnsupportedApi { correlation_id, .. } => {
            tracing::debug!(%error, "refusing request");
            Ok(Some(vec![encode_bare_error(
                correlation_id,
                ErrorCode::UnsupportedVersion,
            )]))
        }
        RequestError::TooShort { .. } | RequestError::Malformed { .. } => Err(error.into()),
    }
}
