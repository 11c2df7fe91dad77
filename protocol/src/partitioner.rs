//! Java-compatible partitioning: a keyed record goes to
//! `toPositive(murmur2(key)) % partitions`, as the Java client's default partitioner and
//! librdkafka's `murmur2_random` do, so the same key lands on the same partition whichever
//! client produced it.

/// The partition for `key` among `partitions` (> 0).
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0);
    let hash = murmur2::murmur2(key, murmur2::KAFKA_SEED) as i32;
    (hash & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    /// Kafka's own test vectors (`UtilsTest.testMurmur2`).
    #[test]
    fn matches_kafka_murmur2() {
        for (key, expected) in [
            (&b"21"[..], -973_932_308i32),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ] {
            assert_eq!(
                murmur2::murmur2(key, murmur2::KAFKA_SEED) as i32,
                expected,
                "{:?}",
                String::from_utf8_lossy(key)
            );
        }
        assert_eq!(super::partition_for_key(b"abc", 3), 479_470_107 % 3);
    }
}
