//! Start-up recovery after damage a crash or a bad disk can leave behind: each case closes a
//! log, damages its files, reopens it and checks exactly what is served and what follows.

mod common;

use common::*;
use engine::storage::{Ack, Clock, LogConfig};

const ACTIVE_LOG: &str = "00000000000000000000.log";
const ACTIVE_INDEX: &str = "00000000000000000000.index";
const ACTIVE_TIME_INDEX: &str = "00000000000000000000.timeindex";
const BATCHES: u64 = 12;
const RECORDS: usize = 4;

fn config(env: &Env) -> LogConfig {
    LogConfig {
        index_interval_bytes: 1_000,
        ..env.config()
    }
}

/// Writes `BATCHES` durable batches into one segment and returns them as stored.
fn populate(env: &Env) -> Vec<(i64, Vec<u8>)> {
    env.run(async {
        let log = env.open(config(env), Clock::system()).await;
        let mut expected = Vec::new();
        for tag in 0..BATCHES {
            let original = batch(tag, RECORDS, 90, T0 + tag as i64 * 10);
            let appended = log
                .append(bytes_mut(&original), Ack::Durable)
                .await
                .unwrap();
            let base = appended.base_offset;
            appended.wait().await.unwrap();
            expected.push((base, stored(&original, base)));
        }
        log.close().await.unwrap();
        expected
    })
}

fn logical_len(batches: &[(i64, Vec<u8>)]) -> usize {
    batches.iter().map(|(_, bytes)| bytes.len()).sum()
}

/// Reopens the log and checks it serves exactly `expected`, then accepts a new batch at the
/// offset after it and serves that too.
fn reopen_and_check(env: &Env, expected: &[(i64, Vec<u8>)]) {
    env.run(async {
        let log = env.open(config(env), Clock::system()).await;
        let next = expected.last().map_or(0, |(base, _)| base + RECORDS as i64);
        assert_eq!(log.log_end_offset(), next, "{:?}", env.place);
        assert_eq!(read_everything(&log).await, expected, "{:?}", env.place);
        let found = log.offset_for_timestamp(T0 + 30).await.unwrap();
        if next > 12 {
            assert_eq!(
                found.unwrap().offset,
                12,
                "{:?}: time index works",
                env.place
            );
        }
        let fresh = batch(1000, 2, 30, T0);
        let appended = log.append(bytes_mut(&fresh), Ack::Durable).await.unwrap();
        assert_eq!(appended.base_offset, next);
        appended.wait().await.unwrap();

        let mut with_fresh = expected.to_vec();
        with_fresh.push((next, stored(&fresh, next)));
        assert_eq!(read_everything(&log).await, with_fresh);
        log.close().await.unwrap();
    });
    env.run(async {
        let log = env.open(config(env), Clock::system()).await;
        assert_eq!(
            read_everything(&log).await.len(),
            expected.len() + 1,
            "{:?}: second reopen",
            env.place
        );
        log.close().await.unwrap();
    });
}

fn damage_log(env: &Env, damage: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = env.file_bytes(ACTIVE_LOG).expect("log exists");
    damage(&mut bytes);
    env.write_file(ACTIVE_LOG, bytes);
}

fn for_every_place(test: impl Fn(&Env)) {
    for place in EVERY_PLACE {
        test(&Env::new(place));
    }
}

#[test]
fn file_cut_mid_batch_loses_only_the_torn_batch() {
    for_every_place(|env| {
        let batches = populate(env);
        let last_start = logical_len(&batches[..batches.len() - 1]);
        damage_log(env, |bytes| bytes.truncate(last_start + 30));
        reopen_and_check(env, &batches[..batches.len() - 1]);
    });
}

#[test]
fn garbage_after_the_end_is_ignored_and_removed() {
    for_every_place(|env| {
        let batches = populate(env);
        let end = logical_len(&batches);
        damage_log(env, |bytes| {
            bytes.truncate(end);
            bytes.extend((0..5000u32).map(|i| (i * 7919 % 251) as u8));
        });
        reopen_and_check(env, &batches);
    });
}

#[test]
fn zeroed_tail_ends_the_log() {
    for_every_place(|env| {
        let batches = populate(env);
        let end = logical_len(&batches);
        damage_log(env, |bytes| {
            bytes.truncate(end);
            bytes.resize(end + 1024 * 1024, 0);
        });
        reopen_and_check(env, &batches);

        // Zeros over the last batch (a write that never reached the disk) cut it off.
        let env = Env::new(env.place);
        let batches = populate(&env);
        let last_start = logical_len(&batches[..batches.len() - 1]);
        damage_log(&env, |bytes| bytes[last_start..].fill(0));
        reopen_and_check(&env, &batches[..batches.len() - 1]);
    });
}

#[test]
fn missing_indexes_are_rebuilt_from_the_log() {
    for_every_place(|env| {
        let batches = populate(env);
        assert!(
            !env.file_bytes(ACTIVE_INDEX).unwrap().is_empty(),
            "{:?}: index written at close",
            env.place
        );
        env.remove_file(ACTIVE_INDEX);
        env.remove_file(ACTIVE_TIME_INDEX);
        reopen_and_check(env, &batches);
        assert!(
            !env.file_bytes(ACTIVE_INDEX).unwrap().is_empty(),
            "{:?}: index rebuilt",
            env.place
        );
    });
}

#[test]
fn corrupted_indexes_are_rebuilt_from_the_log() {
    for_every_place(|env| {
        // Torn entry.
        let batches = populate(env);
        let mut index = env.file_bytes(ACTIVE_INDEX).unwrap();
        index.truncate(index.len() - 3);
        env.write_file(ACTIVE_INDEX, index);
        reopen_and_check(env, &batches);

        // Entries in order, but the last points into the middle of a batch.
        let env = Env::new(env.place);
        let batches = populate(&env);
        let mut index = env.file_bytes(ACTIVE_INDEX).unwrap();
        let last = index.len() - 4;
        let position = u32::from_be_bytes(index[last..].try_into().unwrap());
        index[last..].copy_from_slice(&(position + 17).to_be_bytes());
        env.write_file(ACTIVE_INDEX, index);
        reopen_and_check(&env, &batches);

        // Random bytes.
        let env = Env::new(env.place);
        let batches = populate(&env);
        env.write_file(
            ACTIVE_INDEX,
            (0..64u8).map(|i| i.wrapping_mul(37)).collect(),
        );
        env.write_file(ACTIVE_TIME_INDEX, vec![0xff; 36]);
        reopen_and_check(&env, &batches);
    });
}

#[test]
fn flipped_byte_inside_a_batch_truncates_from_that_batch() {
    for_every_place(|env| {
        let batches = populate(env);
        let last_start = logical_len(&batches[..batches.len() - 1]);
        damage_log(env, |bytes| bytes[last_start + 70] ^= 0x20);
        reopen_and_check(env, &batches[..batches.len() - 1]);
    });
}

#[test]
fn a_segment_that_does_not_continue_the_log_is_dropped() {
    let env = Env::new(Place::UringDirect);
    let config = LogConfig {
        segment_bytes: 2_000,
        ..config(&env)
    };
    let bases = env.run(async {
        let log = env.open(config.clone(), Clock::system()).await;
        for tag in 0..12u64 {
            append_durable(&log, &batch(tag, RECORDS, 90, T0)).await;
        }
        let bases = log.segment_bases();
        log.close().await.unwrap();
        bases
    });
    assert!(bases.len() >= 3, "{bases:?}");
    // The second segment loses its tail: the segments after it no longer continue the log.
    let second = format!("{:020}.log", bases[1]);
    let mut bytes = env.file_bytes(&second).unwrap();
    bytes.truncate(bytes.len() - 5);
    env.write_file(&second, bytes);
    env.run(async {
        let log = env.open(config.clone(), Clock::system()).await;
        assert_eq!(log.segment_bases(), bases[..2].to_vec());
        let everything = read_everything(&log).await;
        let last = everything.last().unwrap().0;
        assert_eq!(log.log_end_offset(), last + RECORDS as i64);
        let appended = log
            .append(bytes_mut(&batch(99, 1, 10, T0)), Ack::Durable)
            .await
            .unwrap();
        assert_eq!(appended.base_offset, last + RECORDS as i64);
        appended.wait().await.unwrap();
        log.close().await.unwrap();
    });
    assert!(env.file_bytes(&format!("{:020}.log", bases[2])).is_none());
}
