//! A producer: one connection, per-partition batching by size and linger, several requests
//! in flight, records generated on a fixed-rate schedule (or as fast as acknowledgements
//! allow with rate 0).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use protocol::record_batch::{validate_batch, Compression, MAX_BATCH_BYTES};

use crate::payload::{BatchLayout, RecordStamp};
use crate::stats::{now_us, Stats};
use crate::wire::Pipeline;
use crate::workload::{key_text, Keys, Workload, KEY_BYTES};

/// Records waiting for their batch to fill, for one partition.
#[derive(Default)]
struct Accumulator {
    intended_us: Vec<i64>,
    keys: Vec<u32>,
}

/// A batch ready to send.
struct Sealed {
    partition: i32,
    bytes: Vec<u8>,
    intended_us: Vec<i64>,
}

/// What one producer did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProducerTotals {
    pub records: u64,
    pub batches: u64,
    pub requests: u64,
}

pub struct Producer {
    id: u32,
    workload: Arc<Workload>,
    stats: Arc<Stats>,
    pipeline: Arc<Pipeline>,
    produce_version: i16,
    layout: BatchLayout,
    accumulators: Vec<Accumulator>,
    /// Next sequence per partition.
    sequences: Vec<u64>,
    sticky: i32,
    generated: u64,
    random: u64,
    totals: ProducerTotals,
}

impl Producer {
    pub async fn connect(
        id: u32,
        address: &str,
        workload: Arc<Workload>,
        stats: Arc<Stats>,
        produce_version: i16,
    ) -> Result<Producer, String> {
        let pipeline = Pipeline::connect(
            address,
            &format!("loadgen-producer-{id}"),
            workload.in_flight,
        )
        .await
        .map_err(|error| error.to_string())?;
        let key_bytes = workload.keys.is_keyed().then_some(KEY_BYTES);
        let layout =
            BatchLayout::for_batch_bytes(workload.batch_bytes, key_bytes, workload.message_bytes);
        let partitions = workload.partitions as usize;
        Ok(Producer {
            id,
            stats,
            pipeline: Arc::new(pipeline),
            produce_version,
            layout,
            accumulators: (0..partitions).map(|_| Accumulator::default()).collect(),
            sequences: vec![0; partitions],
            sticky: (id as i32) % workload.partitions,
            generated: 0,
            random: 0x9E37_79B9_7F4A_7C15 ^ u64::from(id),
            totals: ProducerTotals::default(),
            workload,
        })
    }

    /// Runs until `stop_us` (intended send times), then waits for every acknowledgement.
    pub async fn run(mut self, start_us: i64, stop_us: i64) -> ProducerTotals {
        let rate = self.workload.rate as f64 / self.workload.producers as f64;
        let linger_us = self.workload.linger.as_micros() as i64;
        let mut acks = tokio::task::JoinSet::new();
        loop {
            if self.stats.failed.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let now = now_us();
            let mut ready = Vec::new();
            if rate > 0.0 {
                let horizon = now.min(stop_us);
                let due = (((horizon - start_us).max(0) as f64) * rate / 1e6) as u64;
                while self.generated < due {
                    let intended = start_us + (self.generated as f64 * 1e6 / rate) as i64;
                    self.add_record(intended, &mut ready);
                }
                // Batches whose first record has waited `linger` go now.
                for partition in 0..self.accumulators.len() {
                    let first = self.accumulators[partition].intended_us.first().copied();
                    if first.is_some_and(|first| now - first >= linger_us || now >= stop_us) {
                        ready.push(self.seal(partition as i32));
                    }
                }
            } else {
                if now >= stop_us {
                    break;
                }
                // Max rate: a full batch for every partition (one request carries them all,
                // as a client's accumulator does under load), as fast as slots free up.
                let round = self.layout.max_records() * self.accumulators.len();
                for _ in 0..round {
                    self.add_record(now, &mut ready);
                }
            }
            if !ready.is_empty() {
                if let Err(message) = self.send(ready, &mut acks).await {
                    self.stats.error(message);
                    break;
                }
            }
            if rate > 0.0 {
                if now >= stop_us && self.accumulators.iter().all(|a| a.intended_us.is_empty()) {
                    break;
                }
                let next_record = start_us + ((self.generated + 1) as f64 * 1e6 / rate) as i64;
                let next_linger = self
                    .accumulators
                    .iter()
                    .filter_map(|a| a.intended_us.first())
                    .map(|first| first + linger_us)
                    .min()
                    .unwrap_or(i64::MAX);
                let wake = next_record.min(next_linger).min(stop_us);
                let wait = (wake - now_us()).max(0) as u64;
                if wait > 0 {
                    tokio::time::sleep(Duration::from_micros(wait)).await;
                }
            }
            // Reap finished acknowledgements so the set stays small.
            while acks.try_join_next().is_some() {}
        }
        while acks.join_next().await.is_some() {}
        self.totals
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: cheap, and good enough to pick keys.
        self.random ^= self.random >> 12;
        self.random ^= self.random << 25;
        self.random ^= self.random >> 27;
        self.random.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn key_for(&mut self, n: u64) -> Option<u32> {
        match self.workload.keys {
            Keys::None => None,
            Keys::RoundRobin { count } => Some((n % u64::from(count)) as u32),
            Keys::Uniform { count } => Some((self.next_random() % u64::from(count)) as u32),
            Keys::HotKey { count, hot_share } => {
                let draw = (self.next_random() >> 11) as f64 / (1u64 << 53) as f64;
                if draw < hot_share {
                    Some(0)
                } else {
                    Some((self.next_random() % u64::from(count)) as u32)
                }
            }
        }
    }

    fn add_record(&mut self, intended_us: i64, ready: &mut Vec<Sealed>) {
        let n = self.generated;
        self.generated += 1;
        let key = self.key_for(n);
        let partition = match key {
            Some(key) => {
                let mut text = [0u8; KEY_BYTES];
                key_text(key, &mut text);
                protocol::partitioner::partition_for_key(&text, self.workload.partitions)
            }
            None => self.sticky,
        };
        let accumulator = &mut self.accumulators[partition as usize];
        accumulator.intended_us.push(intended_us);
        if let Some(key) = key {
            accumulator.keys.push(key);
        }
        if accumulator.intended_us.len() == self.layout.max_records() {
            ready.push(self.seal(partition));
        }
    }

    /// Turns a partition's accumulated records into a batch (and moves the sticky
    /// partition on, as Kafka's sticky partitioner does when a batch is done).
    fn seal(&mut self, partition: i32) -> Sealed {
        let accumulator = std::mem::take(&mut self.accumulators[partition as usize]);
        let count = accumulator.intended_us.len();
        let first_sequence = self.sequences[partition as usize];
        self.sequences[partition as usize] += count as u64;
        let producer = self.id;
        let mut bytes = Vec::with_capacity(self.layout.batch_bytes(count));
        let timestamp_ms = accumulator.intended_us[0] / 1000;
        self.layout.fill(
            &mut bytes,
            count,
            timestamp_ms,
            |i| RecordStamp {
                producer,
                sequence: first_sequence + i as u64,
                sent_us: accumulator.intended_us[i],
            },
            |i, key| key_text(accumulator.keys[i], key),
        );
        if partition == self.sticky {
            self.sticky = (self.sticky + 1) % self.workload.partitions;
        }
        self.totals.batches += 1;
        self.totals.records += count as u64;
        Sealed {
            partition,
            bytes,
            intended_us: accumulator.intended_us,
        }
    }

    /// Sends the batches in one Produce request (batches of one partition concatenated);
    /// its acknowledgement is handled by a task of its own.
    async fn send(
        &mut self,
        ready: Vec<Sealed>,
        acks: &mut tokio::task::JoinSet<()>,
    ) -> Result<(), String> {
        let compression = self.workload.compression;
        let mut by_partition: Vec<(i32, Vec<u8>, Vec<Vec<i64>>)> = Vec::new();
        for sealed in ready {
            let bytes = if compression == Compression::None {
                sealed.bytes
            } else {
                let header = validate_batch(&sealed.bytes, MAX_BATCH_BYTES)
                    .map_err(|error| format!("built an invalid batch: {error}"))?;
                protocol::codec::compress(&sealed.bytes, &header, compression)
                    .map_err(|error| format!("cannot compress: {error}"))?
            };
            match by_partition
                .iter_mut()
                .find(|(p, _, _)| *p == sealed.partition)
            {
                Some((_, records, intended)) => {
                    records.extend_from_slice(&bytes);
                    intended.push(sealed.intended_us);
                }
                None => by_partition.push((sealed.partition, bytes, vec![sealed.intended_us])),
            }
        }
        let records: u64 = by_partition
            .iter()
            .flat_map(|(_, _, intended)| intended.iter().map(|i| i.len() as u64))
            .sum();
        let mut data = Vec::with_capacity(by_partition.len());
        let mut batches: Vec<(i32, Vec<Vec<i64>>)> = Vec::with_capacity(by_partition.len());
        for (partition, bytes, intended) in by_partition {
            data.push(
                PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(Bytes::from(bytes))),
            );
            batches.push((partition, intended));
        }
        let request = ProduceRequest::default()
            .with_acks(self.workload.acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(
                    self.workload.topic.clone(),
                )))
                .with_partition_data(data)]);
        let expect_response = self.workload.acks != 0;
        let answer = self
            .pipeline
            .send(&request, self.produce_version, expect_response)
            .await
            .map_err(|error| error.to_string())?;
        self.totals.requests += 1;
        self.stats
            .sent
            .fetch_add(records, std::sync::atomic::Ordering::Relaxed);
        let stats = self.stats.clone();
        let producer = self.id;
        let version = self.produce_version;
        match answer {
            None => {
                for (partition, intended) in batches {
                    for batch in intended {
                        stats.acknowledged(partition, producer, batch.len() as u64, &batch, None);
                    }
                }
            }
            Some(answer) => {
                acks.spawn(async move {
                    let response: ProduceResponse = match answer.decode(version).await {
                        Ok(response) => response,
                        Err(message) => return stats.error(message),
                    };
                    let ack_us = now_us();
                    for (partition, intended) in batches {
                        let code = response
                            .responses
                            .iter()
                            .flat_map(|topic| topic.partition_responses.iter())
                            .find(|p| p.index == partition)
                            .map(|p| p.error_code);
                        match code {
                            Some(0) => {
                                for batch in intended {
                                    stats.acknowledged(
                                        partition,
                                        producer,
                                        batch.len() as u64,
                                        &batch,
                                        Some(ack_us),
                                    );
                                }
                            }
                            Some(code) => stats.error(format!(
                                "produce to partition {partition}: {}",
                                protocol::error_code::describe(code)
                            )),
                            None => stats.error(format!(
                                "produce response has no answer for partition {partition}"
                            )),
                        }
                    }
                });
            }
        }
        Ok(())
    }
}
