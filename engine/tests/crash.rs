//! Seeded crash and fault injection on the simulated disk.
//!
//! Each seed picks a configuration and a workload, crashes the machine at a chosen I/O
//! operation (or injects EIO / ENOSPC), reboots the disk (unsynced writes lost, applied or
//! torn at random), reopens the log and checks it against a model of what must survive:
//! every batch acknowledged durable is there, byte for byte, at its offset; everything
//! served is a batch that was appended at that offset; offsets are contiguous; the log takes
//! new appends. A failing seed is printed; rerun one with `RINGLOG_SEED=<seed>`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use engine::io::sim::{Faults, SimRng};
use engine::io::{self, Backend};
use engine::storage::{
    Ack, Clock, FlushPolicy, LogConfig, PartitionLog, Preallocation, StorageError, WriteMode,
};

const SEEDS: u64 = 300;

fn seeds() -> Vec<u64> {
    match std::env::var("RINGLOG_SEED") {
        Ok(seed) => vec![seed.parse().expect("RINGLOG_SEED is a number")],
        Err(_) => (0..SEEDS).collect(),
    }
}

fn random_config(rng: &mut SimRng) -> LogConfig {
    LogConfig {
        segment_bytes: 3_000 + rng.below(20_000),
        index_interval_bytes: 200 + rng.below(2_000) as u32,
        preallocation: [
            Preallocation::ZeroFill,
            Preallocation::Fallocate,
            Preallocation::None,
        ][rng.below(3) as usize],
        preallocate_step_bytes: 4096 * (1 + rng.below(4)),
        write_mode: if rng.below(2) == 0 {
            WriteMode::Direct
        } else {
            WriteMode::Buffered
        },
        flush_policy: if rng.below(4) == 0 {
            FlushPolicy::OnDemand
        } else {
            FlushPolicy::EveryWrite
        },
        write_buffer_bytes: 8 * 1024 + rng.below(64 * 1024) as usize,
        tail_cache_bytes: rng.below(3) as usize * 4096,
        retention_ms: None,
        retention_bytes: if rng.below(2) == 0 {
            Some(5_000 + rng.below(30_000))
        } else {
            None
        },
        recycle_segments_max: rng.below(3) as usize,
        ..LogConfig::default()
    }
}

/// What the workload appended and what the log promised.
#[derive(Default)]
struct Model {
    /// Every batch the log accepted, by base offset, as stored.
    appended: BTreeMap<i64, Vec<u8>>,
    /// Base offsets whose `Ack::Durable` wait returned Ok.
    durable: BTreeSet<i64>,
}

async fn workload(log: &PartitionLog, rng: &mut SimRng, model: &mut Model) -> Option<StorageError> {
    for round in 0..(5 + rng.below(25)) {
        let mut waits = Vec::new();
        for i in 0..(1 + rng.below(8)) {
            let original = batch(
                round * 100 + i,
                1 + rng.below(12) as usize,
                rng.below(300) as usize,
                T0 + round as i64,
            );
            match log.append(bytes_mut(&original), Ack::Durable).await {
                Ok(appended) => {
                    model.appended.insert(
                        appended.base_offset,
                        stored(&original, appended.base_offset),
                    );
                    waits.push(appended);
                }
                Err(error) => return Some(error),
            }
        }
        if round % 3 == 2 {
            if let Err(error) = log.apply_retention().await {
                return Some(error);
            }
        }
        for appended in waits {
            let base = appended.base_offset;
            match appended.wait().await {
                Ok(()) => {
                    model.durable.insert(base);
                }
                Err(error) => return Some(error),
            }
        }
    }
    None
}

async fn open(seed: u64, env: &Env, config: &LogConfig) -> PartitionLog {
    PartitionLog::open(
        env.disk.clone(),
        env.dir.clone(),
        config.clone(),
        Clock::system(),
    )
    .await
    .unwrap_or_else(|error| panic!("seed {seed}: open failed: {error}"))
}

fn check_recovered(seed: u64, config: &LogConfig, env: &Env, model: &Model) {
    io::block_on(Backend::Portable, async {
        let log = open(seed, env, config).await;
        let served = read_everything(&log).await;
        let log_start_offset = log.log_start_offset();
        let mut expected_offset = log_start_offset;
        for (base, bytes) in &served {
            assert_eq!(
                *base, expected_offset,
                "seed {seed}: offsets are contiguous"
            );
            let appended = model.appended.get(base).unwrap_or_else(|| {
                panic!("seed {seed}: served a batch at {base} never appended there")
            });
            assert_eq!(
                bytes, appended,
                "seed {seed}: batch at {base} differs from what was appended"
            );
            let header = protocol::record_batch::validate_batch(bytes, usize::MAX).unwrap();
            expected_offset = header.last_offset() + 1;
        }
        let served_bases: BTreeSet<i64> = served.iter().map(|(base, _)| *base).collect();
        for base in model.durable.range(log_start_offset..) {
            assert!(
                served_bases.contains(base),
                "seed {seed}: durable batch at {base} was lost"
            );
        }
        assert_eq!(log.log_end_offset(), expected_offset, "seed {seed}");
        let fresh = batch(999_999, 3, 20, T0);
        let appended = log.append(bytes_mut(&fresh), Ack::Durable).await.unwrap();
        assert_eq!(appended.base_offset, expected_offset, "seed {seed}");
        appended
            .wait()
            .await
            .unwrap_or_else(|error| panic!("seed {seed}: append after recovery: {error}"));
        let again = read_everything(&log).await;
        assert_eq!(
            again.last().unwrap().1,
            stored(&fresh, expected_offset),
            "seed {seed}"
        );
        log.close().await.unwrap();
    })
    .unwrap();
}

#[test]
fn acknowledged_data_survives_crashes_at_every_kind_of_operation() {
    let mut crashes = 0;
    for seed in seeds() {
        let mut rng = SimRng::new(seed);
        let config = random_config(&mut rng);
        let env = Env::new(Place::Sim);
        let mut model = Model::default();
        let crash_at_op = 1 + rng.below(120);
        env.sim().set_faults(Faults {
            crash_at_op: Some(crash_at_op),
            ..Faults::default()
        });
        io::block_on(Backend::Portable, async {
            let log = open(seed, &env, &config).await;
            workload(&log, &mut rng, &mut model).await;
        })
        .unwrap();
        crashes += u64::from(env.sim().crashed());
        env.sim().crash_and_restart(seed);
        check_recovered(seed, &config, &env, &model);
    }
    if seeds().len() > 1 {
        assert!(
            crashes > SEEDS / 2,
            "most seeds crash mid-workload ({crashes} did)"
        );
    }
}

#[test]
fn eio_and_enospc_fail_appends_cleanly_and_lose_nothing_acknowledged() {
    for seed in seeds() {
        let mut rng = SimRng::new(seed ^ 0xfa17);
        let config = random_config(&mut rng);
        let env = Env::new(Place::Sim);
        let mut model = Model::default();
        let eio = rng.below(2) == 0;
        let faults = if eio {
            Faults {
                eio_at_ops: BTreeSet::from([1 + rng.below(60)]),
                ..Faults::default()
            }
        } else {
            Faults {
                capacity_bytes: Some(2_000 + rng.below(60_000)),
                ..Faults::default()
            }
        };
        env.sim().set_faults(faults);
        io::block_on(Backend::Portable, async {
            let log = open(seed, &env, &config).await;
            if let Some(error) = workload(&log, &mut rng, &mut model).await {
                let expected = if eio { libc::EIO } else { libc::ENOSPC };
                assert_eq!(error.raw_os_error(), Some(expected), "seed {seed}: {error}");
                assert_eq!(error.error_code(), protocol::ErrorCode::KafkaStorageError);
                // Offline from then on: later appends fail too, without panicking.
                let later = log
                    .append(bytes_mut(&batch(1, 1, 1, T0)), Ack::Durable)
                    .await;
                if let Ok(appended) = later {
                    assert!(appended.wait().await.is_err(), "seed {seed}");
                }
                // It still serves every batch it acknowledged as durable, as appended.
                let served: BTreeMap<i64, Vec<u8>> =
                    read_everything(&log).await.into_iter().collect();
                for base in model.durable.range(log.log_start_offset()..) {
                    assert_eq!(
                        served.get(base),
                        model.appended.get(base),
                        "seed {seed}: durable batch at {base} served while offline"
                    );
                }
            }
        })
        .unwrap();
        // A restart with the fault gone recovers everything acknowledged.
        env.sim().crash_and_restart(seed);
        check_recovered(seed, &config, &env, &model);
    }
}
