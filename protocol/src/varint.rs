//! Zig-zag varints as RecordBatch v2 records use them (protobuf encoding).

/// The longest varlong is 10 bytes; anything longer is corrupt.
pub const VARLONG_BYTES_MAX: usize = 10;

pub fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// Bytes `put_varlong` writes for `value`.
pub fn varlong_len(value: i64) -> usize {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let mut len = 1;
    while zigzag >= 0x80 {
        zigzag >>= 7;
        len += 1;
    }
    len
}

/// Reads a varlong from the front of `input`; returns the value and the bytes used, or
/// `None` when the input ends early or the varint is longer than 10 bytes.
#[inline]
pub fn get_varlong(input: &[u8]) -> Option<(i64, usize)> {
    // Most varints in a batch (deltas, lengths, counts) take one or two bytes.
    match *input {
        [first, ..] if first < 0x80 => Some((unzigzag(u64::from(first)), 1)),
        [first, second, ..] if second < 0x80 => Some((
            unzigzag(u64::from(first & 0x7f) | u64::from(second) << 7),
            2,
        )),
        _ => get_varlong_long(input),
    }
}

#[inline]
fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn get_varlong_long(input: &[u8]) -> Option<(i64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in input.iter().take(VARLONG_BYTES_MAX).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((unzigzag(value), i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_across_widths() {
        for value in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i64::MAX,
            i64::MIN,
            1 << 40,
        ] {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(out.len(), varlong_len(value));
            assert_eq!(get_varlong(&out), Some((value, out.len())));
        }
    }

    #[test]
    fn truncated_and_overlong_are_refused() {
        assert_eq!(get_varlong(&[0x80]), None);
        assert_eq!(get_varlong(&[0xff; 11]), None);
        assert_eq!(get_varlong(&[]), None);
    }
}
