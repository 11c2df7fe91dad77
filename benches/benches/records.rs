//! The produce path's check of a batch's records: one batch of 1,000 records of 100 bytes
//! (as the load generator builds them), walked by the record iterator (the check before
//! `validate_records`) and by `validate_records`. Reported per record.

use std::time::Duration;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use loadgen::payload::BatchTemplate;
use protocol::records::{validate_records, Records};

const RECORDS: usize = 1000;

fn bench_records(c: &mut Criterion) {
    let batch = BatchTemplate::new(RECORDS, 100).batch(0, 1_700_000_000_000);
    let mut group = c.benchmark_group("records");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("iterate_1000x100B", |b| {
        b.iter(|| {
            let records = Records::new(black_box(&batch)).expect("valid batch");
            let base = records.header().base_offset;
            for (index, record) in records.enumerate() {
                let record = record.expect("valid record");
                assert_eq!(record.offset - base, index as i64);
            }
        })
    });
    group.bench_function("validate_1000x100B", |b| {
        b.iter(|| validate_records(black_box(&batch)).expect("valid batch"))
    });
    group.finish();
}

criterion_group!(benches, bench_records);
criterion_main!(benches);
