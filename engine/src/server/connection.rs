//! One client connection: read frames, decode, dispatch, answer in order.
//!
//! Requests of one connection are handled one at a time, as Kafka does (it mutes a
//! connection until its response is sent), so appends from one producer connection land
//! in the order they were sent. Memory per connection is bounded: a read chunk of
//! `READ_CHUNK_BYTES` while idle, and at most one frame (`socket.request.max.bytes`), whose
//! size is checked from its prefix before its body is read.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use protocol::frame::{self, FrameError};
use protocol::request::{decode_request, RequestError};
use protocol::response::{encode_bare_error, encode_response};
use protocol::{versions, ErrorCode};

use super::shard::Shard;
use crate::api;
use crate::io::net::Connection;

/// Bytes read at a time while waiting for requests.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Largest single read while a big frame arrives.
const READ_CHUNK_BYTES_MAX: usize = 1024 * 1024;

pub async fn serve(shard: Rc<Shard>, connection: Connection, peer: SocketAddr) {
    tracing::debug!(shard = shard.id, %peer, "connection opened");
    let metrics = shard.context.metrics.clone();
    metrics.connections_open.fetch_add(1, Ordering::Relaxed);
    metrics.connections_total.fetch_add(1, Ordering::Relaxed);
    serve_frames(&shard, &connection, peer).await;
    metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(shard = shard.id, %peer, "connection closed");
}

async fn serve_frames(shard: &Rc<Shard>, connection: &Connection, peer: SocketAddr) {
    let max_request_bytes = shard.context.config.max_request_bytes;
    let mut buffer = BytesMut::new();
    let mut chunk: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
    loop {
        loop {
            match frame::split_frame(&mut buffer, max_request_bytes) {
                Ok(Some(request)) => {
                    if let Err(reason) = handle_frame(shard, connection, request, peer).await {
                        tracing::info!(%peer, %reason, "closing connection");
                        return;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    refuse_frame(&peer, &error);
                    return;
                }
            }
        }
        // Read what the pending frame still needs, within bounds.
        let pending = match frame::peek_frame_size(&buffer, max_request_bytes) {
            Ok(Some(size)) => (size + frame::SIZE_BYTES).saturating_sub(buffer.len()),
            _ => 0,
        };
        let want = pending.clamp(READ_CHUNK_BYTES, READ_CHUNK_BYTES_MAX);
        if chunk.capacity() != want {
            chunk = Vec::with_capacity(want);
        }
        chunk.clear();
        let (result, returned) = connection.read(chunk).await;
        chunk = returned;
        match result {
            Ok(0) => break,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(error) => {
                tracing::debug!(%peer, %error, "connection read failed");
                break;
            }
        }
        if buffer.is_empty() {
            buffer = BytesMut::new();
        }
    }
}

fn refuse_frame(peer: &SocketAddr, error: &FrameError) {
    tracing::warn!(%peer, %error, "refusing frame; closing connection");
}

/// Handles one request frame. An error means the connection must close.
async fn handle_frame(
    shard: &Rc<Shard>,
    connection: &Connection,
    frame: Bytes,
    peer: SocketAddr,
) -> Result<(), String> {
    let response = match decode_request(frame) {
        Ok(request) => {
            let started = std::time::Instant::now();
            let correlation_id = request.header.correlation_id;
            let (api_key, api_version) = (request.api_key, request.api_version);
            let response = match api::handle(shard, request, peer).await? {
                Some(body) => Some(
                    encode_response(correlation_id, api_key, api_version, &body)
                        .map_err(|error| error.to_string())?,
                ),
                None => None,
            };
            shard
                .context
                .metrics
                .request_done(api_key as i16, started.elapsed());
            response
        }
        Err(error) => Some(refusal(&error)?),
    };
    if let Some(response) = response {
        connection
            .write_all(response)
            .await
            .map_err(|error| format!("write failed: {error}"))?;
    }
    Ok(())
}

/// The answer to a request that could not be decoded, or an error to close the connection.
fn refusal(error: &RequestError) -> Result<Bytes, String> {
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
            encode_response(*correlation_id, ApiKey::ApiVersions, 0, &body)
                .map_err(|error| error.to_string())
        }
        RequestError::UnsupportedVersion { correlation_id, .. }
        | RequestError::UnknownApiKey { correlation_id, .. }
        | RequestError::UnsupportedApi { correlation_id, .. } => {
            tracing::info!(%error, "refusing request");
            Ok(encode_bare_error(
                *correlation_id,
                ErrorCode::UnsupportedVersion,
            ))
        }
        RequestError::TooShort { .. } | RequestError::Malformed { .. } => Err(error.to_string()),
    }
}
