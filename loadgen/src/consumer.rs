//! A consumer: fetches its share of the partitions from the offsets they had when the run
//! started, checks every record's sequence, and measures end-to-end latency (receive time
//! minus the intended send time carried in the record).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::wire::Pipeline;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use protocol::client::Client;
use protocol::record_batch::{BatchHeader, Compression, MAX_BATCH_BYTES};
use protocol::records::Records;

use crate::payload::RecordStamp;
use crate::stats::{now_us, Stats};
use crate::workload::Workload;

pub struct Consumer {
    pipeline: Pipeline,
    workload: Arc<Workload>,
    stats: Arc<Stats>,
    fetch_version: i16,
    /// (partition, next offset).
    positions: Vec<(i32, i64)>,
    /// The stamps and latencies of one partition's records in a fetch, kept between
    /// fetches so that reading them allocates nothing once they have grown.
    stamps: Vec<RecordStamp>,
    latencies: Vec<i64>,
}

impl Consumer {
    pub async fn connect(
        id: usize,
        address: &str,
        workload: Arc<Workload>,
        stats: Arc<Stats>,
        positions: Vec<(i32, i64)>,
    ) -> Result<Consumer, String> {
        let client_id = format!("loadgen-consumer-{id}");
        let fetch_version = Client::connect(address, &client_id)
            .await
            .and_then(|client| client.version_for::<FetchRequest>(12))
            .map_err(|error| error.to_string())?;
        let pipeline = Pipeline::connect(address, &client_id, 1)
            .await
            .map_err(|error| error.to_string())?;
        Ok(Consumer {
            pipeline,
            workload,
            stats,
            fetch_version,
            positions,
            stamps: Vec::new(),
            latencies: Vec::new(),
        })
    }

    /// Fetches until `done` is set; returns the next offset of each partition.
    pub async fn run(mut self, done: Arc<std::sync::atomic::AtomicBool>) -> Vec<(i32, i64)> {
        self.fetch_until(done).await;
        self.positions
    }

    async fn fetch_until(&mut self, done: Arc<std::sync::atomic::AtomicBool>) {
        let topic = TopicName(StrBytes::from_string(self.workload.topic.clone()));
        while !done.load(Ordering::Relaxed) && !self.positions.is_empty() {
            let request = FetchRequest::default()
                .with_replica_id((-1).into())
                .with_max_wait_ms(self.workload.fetch_max_wait.as_millis() as i32)
                .with_min_bytes(1)
                .with_max_bytes(self.workload.fetch_max_bytes)
                .with_isolation_level(0)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic.clone())
                    .with_partitions(
                        self.positions
                            .iter()
                            .map(|(partition, offset)| {
                                FetchPartition::default()
                                    .with_partition(*partition)
                                    .with_fetch_offset(*offset)
                                    .with_partition_max_bytes(self.workload.fetch_max_bytes)
                            })
                            .collect(),
                    )]);
            let sent = self.pipeline.send(&request, self.fetch_version, true).await;
            let response: kafka_protocol::messages::FetchResponse = match sent {
                Ok(Some(answer)) => match answer.decode(self.fetch_version).await {
                    Ok(response) => response,
                    Err(message) => return self.stats.error(format!("fetch failed: {message}")),
                },
                Ok(None) => return,
                Err(error) => return self.stats.error(format!("fetch failed: {error}")),
            };
            let received_us = now_us();
            if response.error_code != 0 {
                return self.stats.error(format!(
                    "fetch: {}",
                    protocol::error_code::describe(response.error_code)
                ));
            }
            for topic in &response.responses {
                for partition in &topic.partitions {
                    if partition.error_code != 0 {
                        return self.stats.error(format!(
                            "fetch of partition {}: {}",
                            partition.partition_index,
                            protocol::error_code::describe(partition.error_code)
                        ));
                    }
                    let Some(records) = &partition.records else {
                        continue;
                    };
                    match self.take_batches(partition.partition_index, records, received_us) {
                        Ok(Some(next)) => {
                            if let Some(position) = self
                                .positions
                                .iter_mut()
                                .find(|(p, _)| *p == partition.partition_index)
                            {
                                position.1 = position.1.max(next);
                            }
                        }
                        Ok(None) => {}
                        Err(message) => return self.stats.error(message),
                    }
                }
            }
        }
    }

    /// Reads every whole batch at or after the partition's position; returns the next
    /// offset to fetch.
    fn take_batches(
        &mut self,
        partition: i32,
        bytes: &[u8],
        received_us: i64,
    ) -> Result<Option<i64>, String> {
        let position = self
            .positions
            .iter()
            .find(|(p, _)| *p == partition)
            .map(|(_, o)| *o)
            .unwrap_or(0);
        let mut at = 0;
        let mut next = None;
        let mut latencies = std::mem::take(&mut self.latencies);
        let mut stamps = std::mem::take(&mut self.stamps);
        latencies.clear();
        stamps.clear();
        while at < bytes.len() {
            let Ok(header) = BatchHeader::parse(&bytes[at..]) else {
                break;
            };
            let end = at + header.total_bytes();
            let Some(batch) = bytes.get(at..end) else {
                break; // a partial batch at the end of a fetch
            };
            at = end;
            next = Some(header.last_offset() + 1);
            if header.last_offset() < position || header.is_control() {
                continue;
            }
            let plain;
            let batch = match header.compression() {
                Ok(Compression::None) => batch,
                Ok(_) => {
                    plain = protocol::codec::uncompress_batch(batch, &header, MAX_BATCH_BYTES)
                        .map_err(|error| format!("partition {partition}: {error}"))?;
                    &plain[..]
                }
                Err(error) => return Err(format!("partition {partition}: {error}")),
            };
            let records =
                Records::new(batch).map_err(|error| format!("partition {partition}: {error}"))?;
            for record in records {
                let record = record.map_err(|error| format!("partition {partition}: {error}"))?;
                if record.offset < position {
                    continue;
                }
                // Keyed records must sit where Java's partitioner puts their key.
                if let Some(key) = record.key.filter(|_| self.workload.keys.is_keyed()) {
                    let expected =
                        protocol::partitioner::partition_for_key(key, self.workload.partitions);
                    if expected != partition {
                        return Err(format!(
                            "key {} is in partition {partition}, murmur2 says {expected}",
                            String::from_utf8_lossy(key)
                        ));
                    }
                }
                let stamp = record
                    .value
                    .and_then(RecordStamp::read)
                    .ok_or_else(|| format!("partition {partition} offset {}: a record without a loadgen stamp (is the topic shared?)", record.offset))?;
                stamps.push(stamp);
                if self.stats.measured(stamp.sent_us) {
                    latencies.push(received_us - stamp.sent_us);
                }
            }
        }
        if !stamps.is_empty() {
            let mut sequences = self.stats.sequences.lock().expect("sequences lock");
            let mut rest = &stamps[..];
            while let Some(first) = rest.first() {
                let run = rest
                    .iter()
                    .zip(first.sequence..)
                    .take_while(|(stamp, sequence)| {
                        stamp.producer == first.producer && stamp.sequence == *sequence
                    })
                    .count();
                sequences.observe_run(partition, first.producer, first.sequence, run as u64);
                rest = &rest[run..];
            }
            drop(sequences);
            self.stats
                .consumed
                .fetch_add(stamps.len() as u64, Ordering::Relaxed);
            if self.stats.measured(received_us) {
                self.stats
                    .consumed_measured
                    .fetch_add(stamps.len() as u64, Ordering::Relaxed);
            }
            let mut latency = self.stats.end_to_end.lock().expect("latency lock");
            latency.record_all(latencies.iter().copied());
        }
        self.latencies = latencies;
        self.stamps = stamps;
        Ok(next)
    }
}
