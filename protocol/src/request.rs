//! Decoding a request frame: header, then body, against the table of supported versions.
//!
//! The header's first 8 bytes (api key, api version, correlation id) are read by hand so
//! that even an unknown API or an unsupported version can be answered with the client's
//! correlation id. Bodies are decoded with `kafka-protocol`; its decoders are guarded by
//! `catch_unwind`, so a malformed body is an error here, never a panic in the broker.
//! Record data inside a Produce body stays a zero-copy slice of the frame.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::versions::{self, SupportedApi};

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub api_version: i16,
    pub body: RequestKind,
}

/// Why a frame could not be decoded as a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request of {len} bytes is too short for a request header")]
    TooShort { len: usize },
    #[error("unknown API key {api_key}")]
    UnknownApiKey {
        api_key: i16,
        api_version: i16,
        correlation_id: i32,
    },
    #[error("{api_key:?} v{api_version} is not supported (this broker serves v{}..=v{})", supported.min_version, supported.max_version)]
    UnsupportedVersion {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
        supported: SupportedApi,
    },
    #[error("{api_key:?} is not served by this broker")]
    UnsupportedApi {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
    },
    #[error("malformed {api_key:?} v{api_version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
        reason: String,
    },
}

impl RequestError {
    /// The correlation id to answer with, when the header was readable.
    pub fn correlation_id(&self) -> Option<i32> {
        match self {
            RequestError::TooShort { .. } => None,
            RequestError::UnknownApiKey { correlation_id, .. }
            | RequestError::UnsupportedVersion { correlation_id, .. }
            | RequestError::UnsupportedApi { correlation_id, .. }
            | RequestError::Malformed { correlation_id, .. } => Some(*correlation_id),
        }
    }
}

/// Decodes one frame (without its size prefix).
pub fn decode_request(frame: Bytes) -> Result<Request, RequestError> {
    if frame.len() < 8 {
        return Err(RequestError::TooShort { len: frame.len() });
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api_key) = ApiKey::try_from(api_key_raw) else {
        return Err(RequestError::UnknownApiKey {
            api_key: api_key_raw,
            api_version,
            correlation_id,
        });
    };
    let Some(supported) = versions::supported(api_key) else {
        return Err(RequestError::UnsupportedApi {
            api_key,
            api_version,
            correlation_id,
        });
    };
    if api_version < supported.min_version || api_version > supported.max_version {
        return Err(RequestError::UnsupportedVersion {
            api_key,
            api_version,
            correlation_id,
            supported,
        });
    }
    let malformed = |reason: String| RequestError::Malformed {
        api_key,
        api_version,
        correlation_id,
        reason,
    };
    let decoded = std::panic::catch_unwind(move || {
        let mut buf = frame;
        let header = RequestHeader::decode(&mut buf, api_key.request_header_version(api_version))
            .map_err(|error| error.to_string())?;
        let body = RequestKind::decode(api_key, &mut buf, api_version)
            .map_err(|error| error.to_string())?;
        Ok::<_, String>((header, body))
    });
    match decoded {
        Ok(Ok((header, body))) => Ok(Request {
            header,
            api_key,
            api_version,
            body,
        }),
        Ok(Err(error)) => Err(malformed(error)),
        Err(_) => Err(malformed("the decoder rejected the body".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{MetadataRequest, RequestHeader};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn frame(api_key: ApiKey, api_version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(api_version)
            .with_correlation_id(77)
            .with_client_id(Some(StrBytes::from_static_str("test")))
            .encode(&mut buf, api_key.request_header_version(api_version))
            .unwrap();
        body.encode(&mut buf, api_version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_a_supported_request() {
        let request =
            decode_request(frame(ApiKey::Metadata, 9, &MetadataRequest::default())).unwrap();
        assert_eq!(request.api_key, ApiKey::Metadata);
        assert_eq!(request.header.correlation_id, 77);
        assert!(matches!(request.body, RequestKind::Metadata(_)));
    }

    #[test]
    fn refusals_keep_the_correlation_id() {
        let unsupported =
            decode_request(frame(ApiKey::Metadata, 13, &MetadataRequest::default())).unwrap_err();
        assert!(matches!(
            unsupported,
            RequestError::UnsupportedVersion { .. }
        ));
        assert_eq!(unsupported.correlation_id(), Some(77));
        let mut unknown = frame(ApiKey::Metadata, 9, &MetadataRequest::default()).to_vec();
        unknown[..2].copy_from_slice(&999i16.to_be_bytes());
        let unknown = decode_request(Bytes::from(unknown)).unwrap_err();
        assert!(matches!(
            unknown,
            RequestError::UnknownApiKey { api_key: 999, .. }
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(b"abc")),
            Err(RequestError::TooShort { len: 3 })
        ));
    }

    #[test]
    fn truncated_bodies_are_malformed_not_panics() {
        let whole = frame(
            ApiKey::Metadata,
            9,
            &MetadataRequest::default().with_topics(None),
        );
        for cut in 8..whole.len() {
            let result = decode_request(whole.slice(..cut));
            assert!(
                matches!(result, Err(RequestError::Malformed { .. })),
                "cut {cut}: {result:?}"
            );
        }
    }
}
