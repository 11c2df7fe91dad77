//! Encoding response frames: size prefix, response header, body.
//!
//! The header version follows the API and version, except for `ApiVersions`, whose
//! response header is always v0 (clients must read it before they know what we support).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

use crate::ErrorCode;

#[derive(Debug, thiserror::Error)]
#[error("cannot encode {api_key:?} v{api_version} response: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub reason: String,
}

/// The response header version for an API and version.
pub fn response_header_version(api_key: ApiKey, api_version: i16) -> i16 {
    if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(api_version)
    }
}

/// A whole response frame, size prefix included.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    api_version: i16,
    body: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    let fail = |error: &dyn std::fmt::Display| EncodeError {
        api_key,
        api_version,
        reason: error.to_string(),
    };
    // A Fetch response carries megabytes of records: sized up front, they are copied into
    // the frame once rather than again at every doubling of the buffer.
    let body_bytes = match body {
        ResponseKind::Fetch(fetch) => fetch.compute_size(api_version).unwrap_or(0),
        _ => 0,
    };
    let mut out = BytesMut::with_capacity(256 + body_bytes);
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, response_header_version(api_key, api_version))
        .map_err(|error| fail(&error))?;
    body.encode(&mut out, api_version)
        .map_err(|error| fail(&error))?;
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

/// A response to a request whose API we cannot answer in its own schema (an unknown API
/// key): header v0 and a bare error code, which is how every response body that starts with
/// an error code reads.
pub fn encode_bare_error(correlation_id: i32, error: ErrorCode) -> Bytes {
    let mut out = BytesMut::with_capacity(10);
    out.put_i32(6);
    out.put_i32(correlation_id);
    out.put_i16(error.code());
    out.freeze()
}
