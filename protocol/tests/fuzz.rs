//! Random and mutated frames through the request decoder and the batch validator: nothing
//! may panic or abort, whatever the bytes. Deterministic (seeded); rerun one seed with
//! RINGLOG_SEED.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Request, StrBytes};
use protocol::client::encode_request;
use protocol::record_batch::{validate_batch, RecordBatchBuilder, MAX_BATCH_BYTES};
use protocol::records::{validate_records, Records};
use protocol::request::decode_request;

#[global_allocator]
static ALLOCATOR: protocol::alloc::ReserveHugeAllocations = protocol::alloc::ReserveHugeAllocations;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

fn frame<R: Request + Encodable>(request: &R, version: i16) -> Bytes {
    let mut framed = encode_request(request, version, 7, "fuzz").expect("encodes");
    let _ = framed.split_to(4);
    framed.freeze()
}

fn batch() -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new(1_000);
    for i in 0..5 {
        builder.push_with_headers(
            Some(b"key"),
            Some(format!("value {i}").as_bytes()),
            &[(b"h", Some(b"v"))],
            1_000 + i,
        );
    }
    builder.finish()
}

/// One valid frame per supported API, at several versions.
fn seeds() -> Vec<Bytes> {
    let topic = TopicName(StrBytes::from_static_str("t"));
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic.clone())
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch().into()))])]);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic.clone())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1000)])]);
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic.clone())),
    ]));
    let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(topic)
        .with_num_partitions(3)]);
    let mut frames = Vec::new();
    for version in [3, 7, 9] {
        frames.push(frame(&produce, version));
    }
    for version in [4, 10, 12] {
        frames.push(frame(&fetch, version));
    }
    for version in [0, 4, 9, 12] {
        frames.push(frame(&metadata, version));
    }
    for version in [2, 5, 7] {
        frames.push(frame(&create, version));
    }
    frames.push(frame(&ApiVersionsRequest::default(), 3));
    frames.push(frame(&ListOffsetsRequest::default(), 7));
    frames.push(frame(&DeleteTopicsRequest::default(), 6));
    frames
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)];
            }
            2 if bytes.len() > 4 => {
                // A huge length or count somewhere.
                let at = rng.below(bytes.len() - 3);
                bytes[at..at + 4].copy_from_slice(&[0x7f, 0xff, 0xff, 0xf0]);
            }
            3 if !bytes.is_empty() => bytes.truncate(rng.below(bytes.len())),
            _ => bytes.extend((0..rng.below(16)).map(|_| rng.next() as u8)),
        }
    }
    bytes
}

fn seed_range() -> std::ops::Range<u64> {
    match std::env::var("RINGLOG_SEED") {
        Ok(seed) => {
            let seed: u64 = seed.parse().expect("RINGLOG_SEED is a number");
            seed..seed + 1
        }
        Err(_) => 0..20_000,
    }
}

#[test]
fn mutated_and_random_frames_never_panic_the_decoder() {
    let seeds = seeds();
    for seed in seeds.iter() {
        assert!(
            decode_request(seed.clone()).is_ok(),
            "the seeds are valid requests"
        );
    }
    let mut rejected = 0;
    for round in seed_range() {
        let mut rng = Rng(round);
        let input = if round % 10 == 0 {
            (0..rng.below(64)).map(|_| rng.next() as u8).collect()
        } else {
            let pick = rng.below(seeds.len());
            mutate(&mut rng, &seeds[pick])
        };
        let outcome = std::panic::catch_unwind(|| decode_request(Bytes::from(input.clone())));
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => rejected += 1,
            Err(_) => panic!("seed {round}: the decoder panicked on {input:?}"),
        }
    }
    assert!(
        rejected > 0,
        "mutations were rejected, so they reached the decoder"
    );
}

#[test]
fn mutated_batches_never_panic_the_validator_or_record_reader() {
    let original = batch();
    for round in seed_range() {
        let mut rng = Rng(round ^ 0xba7c4);
        let input = mutate(&mut rng, &original);
        let outcome = std::panic::catch_unwind(|| {
            let _ = validate_batch(&input, MAX_BATCH_BYTES);
            if let Ok(records) = Records::new(&input) {
                for record in records {
                    let _ = record;
                }
            }
            // What the produce path's check accepts, the reader reads whole, in order.
            if validate_records(&input).is_ok() {
                let records = Records::new(&input).expect("a valid batch has a header");
                let base = records.header().base_offset;
                let count = records.header().record_count;
                let read: Vec<_> = records.collect();
                assert_eq!(read.len(), count as usize, "seed {round}");
                for (index, record) in read.into_iter().enumerate() {
                    let record = record.expect("a validated record reads");
                    assert_eq!(record.offset, base + index as i64, "seed {round}");
                }
            }
        });
        assert!(outcome.is_ok(), "seed {round}: panicked on {input:?}");
    }
    let _ = BytesMut::new();
}
