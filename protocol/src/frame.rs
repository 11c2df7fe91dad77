//! Length-prefixed frames: a big-endian i32 size, then that many bytes (request header and
//! body). Sizes are checked before any body byte is buffered, so an oversized frame is
//! refused without the memory it asks for.

use bytes::{Buf, Bytes, BytesMut};

/// Bytes of the size prefix.
pub const SIZE_BYTES: usize = 4;
/// Kafka's `socket.request.max.bytes` default.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds socket.request.max.bytes ({max_bytes})")]
    TooLarge { size: usize, max_bytes: usize },
    #[error("frame size {size} is negative")]
    Negative { size: i32 },
}

/// The size of the frame at the front of `buffer`, once its prefix has arrived.
pub fn peek_frame_size(buffer: &[u8], max_bytes: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buffer.get(..SIZE_BYTES) else {
        return Ok(None);
    };
    let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let size = usize::try_from(size).map_err(|_| FrameError::Negative { size })?;
    if size > max_bytes {
        return Err(FrameError::TooLarge { size, max_bytes });
    }
    Ok(Some(size))
}

/// Takes one whole frame (without its prefix) off the front of `buffer`, if it has arrived.
pub fn split_frame(buffer: &mut BytesMut, max_bytes: usize) -> Result<Option<Bytes>, FrameError> {
    match peek_frame_size(buffer, max_bytes)? {
        Some(size) if buffer.len() >= SIZE_BYTES + size => {
            buffer.advance(SIZE_BYTES);
            Ok(Some(buffer.split_to(size).freeze()))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_only_when_complete() {
        let mut buffer = BytesMut::new();
        buffer.extend_from_slice(&5i32.to_be_bytes());
        buffer.extend_from_slice(b"hel");
        assert_eq!(split_frame(&mut buffer, 100), Ok(None));
        buffer.extend_from_slice(b"lo");
        buffer.extend_from_slice(&0i32.to_be_bytes());
        assert_eq!(
            split_frame(&mut buffer, 100).unwrap().unwrap(),
            Bytes::from_static(b"hello")
        );
        assert_eq!(
            split_frame(&mut buffer, 100).unwrap().unwrap(),
            Bytes::new()
        );
        assert!(buffer.is_empty());
    }

    #[test]
    fn oversized_and_negative_sizes_are_refused_from_the_prefix() {
        let mut buffer = BytesMut::from(&101i32.to_be_bytes()[..]);
        assert_eq!(
            split_frame(&mut buffer, 100),
            Err(FrameError::TooLarge {
                size: 101,
                max_bytes: 100
            })
        );
        let mut buffer = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert_eq!(
            split_frame(&mut buffer, 100),
            Err(FrameError::Negative { size: -1 })
        );
    }
}
