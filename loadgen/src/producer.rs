//! A producer: one connection, per-partition batching by size and linger, several requests
//! in flight, records generated on a fixed-rate schedule (or as fast as acknowledgements
//! allow with rate 0).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use protocol::record_batch::{validate_batch, Compression, MAX_BATCH_BYTES};
use protocol::response::records_placeholder;

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
    /// Records whose intended send time fell in the measured window (the offered load).
    pub offered_measured: u64,
    /// When its last acknowledgement arrived (microseconds since the epoch).
    pub finished_us: i64,
    pub batches: u64,
    pub requests: u64,
}

pub struct Producer {
    id: u32,
    workload: Arc<Workload>,
    stats: Arc<Stats>,
    /// One connection per broker leading some partition.
    pipelines: Vec<Arc<Pipeline>>,
    /// The pipeline of each partition's leader.
    routes: Vec<usize>,
    produce_version: i16,
    layout: BatchLayout,
    accumulators: Vec<Accumulator>,
    /// Next sequence per partition.
    sequences: Vec<u64>,
    sticky: i32,
    generated: u64,
    /// Bytes of records generated and not yet acknowledged (`buffer_bytes` bounds it).
    buffered: Arc<std::sync::atomic::AtomicU64>,
    random: u64,
    totals: ProducerTotals,
}

/// The next request from the queue of sealed batches: batches in queue order, all for the
/// broker (`routes`) of the first, at most one per partition (a later batch of a partition
/// never overtakes an earlier one), at most `max_bytes` together (a single larger batch
/// goes alone).
fn take_request(
    queue: &mut VecDeque<Sealed>,
    max_bytes: usize,
    routes: &[usize],
) -> Option<Vec<Sealed>> {
    let mut taken = Vec::new();
    let mut bytes = 0;
    let mut seen: Vec<i32> = Vec::new();
    let route = routes[queue.front()?.partition as usize];
    let mut at = 0;
    while at < queue.len() {
        let partition = queue[at].partition;
        let len = queue[at].bytes.len();
        if seen.contains(&partition) || routes[partition as usize] != route {
            at += 1;
            continue;
        }
        seen.push(partition);
        if !taken.is_empty() && bytes + len > max_bytes {
            at += 1;
            continue;
        }
        bytes += len;
        taken.push(queue.remove(at).expect("index in range"));
    }
    (!taken.is_empty()).then_some(taken)
}

impl Producer {
    /// Connects to every broker of `leaders` (the leader's address of each partition).
    pub async fn connect(
        id: u32,
        leaders: &[String],
        workload: Arc<Workload>,
        stats: Arc<Stats>,
        produce_version: i16,
    ) -> Result<Producer, String> {
        let mut addresses: Vec<&String> = Vec::new();
        let mut routes = Vec::with_capacity(leaders.len());
        for leader in leaders {
            let route = match addresses.iter().position(|address| *address == leader) {
                Some(route) => route,
                None => {
                    addresses.push(leader);
                    addresses.len() - 1
                }
            };
            routes.push(route);
        }
        let mut pipelines = Vec::with_capacity(addresses.len());
        for address in addresses {
            let pipeline = Pipeline::connect(
                address,
                &format!("loadgen-producer-{id}"),
                workload.in_flight,
            )
            .await
            .map_err(|error| format!("{address}: {error}"))?;
            pipelines.push(Arc::new(pipeline));
        }
        let key_bytes = workload.keys.is_keyed().then_some(KEY_BYTES);
        let layout =
            BatchLayout::for_batch_bytes(workload.batch_bytes, key_bytes, workload.message_bytes);
        let partitions = workload.partitions as usize;
        Ok(Producer {
            id,
            stats,
            pipelines,
            routes,
            produce_version,
            layout,
            accumulators: (0..partitions).map(|_| Accumulator::default()).collect(),
            sequences: vec![0; partitions],
            sticky: (id as i32) % workload.partitions,
            generated: 0,
            buffered: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            random: 0x9E37_79B9_7F4A_7C15 ^ u64::from(id),
            totals: ProducerTotals::default(),
            workload,
        })
    }

    /// Runs until `stop_us` (intended send times), then waits for every acknowledgement.
    ///
    /// Records are generated on the schedule while the producer's buffer has room
    /// (`buffer_bytes` of records generated and not yet acknowledged); past it they wait,
    /// still due at their intended time, as `send()` blocks in the Java client. Sealed
    /// batches queue in order and go out in requests of at most `max_request_bytes` with at
    /// most one batch per partition, as fast as in-flight slots free up.
    pub async fn run(mut self, start_us: i64, stop_us: i64) -> ProducerTotals {
        let rate = self.workload.rate as f64 / self.workload.producers as f64;
        let linger_us = self.workload.linger.as_micros() as i64;
        let record_bytes = self.workload.message_bytes as u64;
        let buffer_bytes = self.workload.buffer_bytes as u64;
        let mut acks = tokio::task::JoinSet::new();
        let mut queue: VecDeque<Sealed> = VecDeque::new();
        let timer = match crate::timer::PreciseTimer::new() {
            Ok(timer) => timer,
            Err(error) => {
                self.stats.error(format!("cannot create a timer: {error}"));
                return self.totals;
            }
        };
        loop {
            if self.stats.failed.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let now = now_us();
            let has_room = |producer: &Producer| {
                producer.buffered.load(std::sync::atomic::Ordering::Relaxed) + record_bytes
                    <= buffer_bytes
            };
            if rate > 0.0 {
                let horizon = now.min(stop_us);
                let due = self.scheduled_until(horizon, start_us, rate);
                while self.generated < due && has_room(&self) {
                    let intended = start_us + (self.generated as f64 * 1e6 / rate) as i64;
                    self.add_record(intended, &mut queue);
                }
                // Batches whose first record has waited `linger` go now.
                for partition in 0..self.accumulators.len() {
                    let first = self.accumulators[partition].intended_us.first().copied();
                    if first.is_some_and(|first| now - first >= linger_us || now >= stop_us) {
                        let sealed = self.seal(partition as i32);
                        queue.push_back(sealed);
                    }
                }
            } else {
                if now >= stop_us {
                    break;
                }
                // Max rate: a full batch for every partition, as fast as the buffer and the
                // in-flight slots allow.
                if queue.is_empty() {
                    let round = self.layout.max_records() * self.accumulators.len();
                    for _ in 0..round {
                        if !has_room(&self) {
                            break;
                        }
                        self.add_record(now, &mut queue);
                    }
                    for partition in 0..self.accumulators.len() {
                        if !self.accumulators[partition].intended_us.is_empty() {
                            let sealed = self.seal(partition as i32);
                            queue.push_back(sealed);
                        }
                    }
                }
            }
            while let Some(request) =
                take_request(&mut queue, self.workload.max_request_bytes, &self.routes)
            {
                if let Err(message) = self.send(request, &mut acks).await {
                    self.stats.error(message);
                    break;
                }
                // Reap finished acknowledgements so the set stays small.
                while acks.try_join_next().is_some() {}
            }
            if rate > 0.0 {
                let all_generated = self.generated >= self.scheduled_until(stop_us, start_us, rate);
                if now >= stop_us
                    && all_generated
                    && queue.is_empty()
                    && self.accumulators.iter().all(|a| a.intended_us.is_empty())
                {
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
                // Records are made when something happens to them: a batch fills or its
                // linger ends. Unkeyed records all go to the sticky partition, so the
                // moment its batch fills is known; keyed ones are made every 100 us.
                let (next_event, next_linger) = match self.workload.keys {
                    Keys::None => {
                        let sticky = self.accumulators[self.sticky as usize].intended_us.len();
                        let missing = self.layout.max_records().saturating_sub(sticky).max(1);
                        let last = self.generated + missing as u64 - 1;
                        // An empty sticky batch starts with the next record, and its linger
                        // runs from that record's time.
                        let next_linger = match sticky {
                            0 => next_linger.min(next_record.saturating_add(linger_us)),
                            _ => next_linger,
                        };
                        (start_us + (last as f64 * 1e6 / rate) as i64, next_linger)
                    }
                    _ => (next_record.max(now + 100), next_linger),
                };
                let wake = next_record
                    .max(next_event)
                    .min(next_linger)
                    .min(stop_us.max(now + 1000));
                if wake > now_us() {
                    if let Err(error) = timer.sleep_until_us(wake).await {
                        self.stats.error(format!("timer failed: {error}"));
                        break;
                    }
                    self.stats.producer_woke(now_us() - wake);
                } else if !has_room(&self) {
                    // The buffer is full: wait for acknowledgements to free it.
                    match acks.join_next().await {
                        Some(_) => {}
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
            } else if !has_room(&self) && acks.join_next().await.is_none() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            while acks.try_join_next().is_some() {}
        }
        while acks.join_next().await.is_some() {}
        self.totals.finished_us = now_us();
        self.totals
    }

    /// Records of this producer's schedule intended before `until_us`.
    fn scheduled_until(&self, until_us: i64, start_us: i64, rate: f64) -> u64 {
        (((until_us - start_us).max(0) as f64) * rate / 1e6) as u64
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

    fn add_record(&mut self, intended_us: i64, ready: &mut VecDeque<Sealed>) {
        let n = self.generated;
        self.generated += 1;
        if self.stats.measured(intended_us) {
            self.totals.offered_measured += 1;
        }
        self.buffered.fetch_add(
            self.workload.message_bytes as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
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
            let sealed = self.seal(partition);
            ready.push_back(sealed);
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
        let compression = self.workload.compression;
        if compression != Compression::None {
            // Compressed when sealed, so a request's size is known before it is formed.
            let compressed = validate_batch(&bytes, MAX_BATCH_BYTES)
                .map_err(|error| error.to_string())
                .and_then(|header| {
                    protocol::codec::compress(&bytes, &header, compression)
                        .map_err(|error| error.to_string())
                });
            match compressed {
                Ok(compressed) => bytes = compressed,
                Err(message) => self
                    .stats
                    .error(format!("cannot compress a batch: {message}")),
            }
        }
        Sealed {
            partition,
            bytes,
            intended_us: accumulator.intended_us,
        }
    }

    /// Sends one request's batches (at most one per partition); its acknowledgement is
    /// handled by a task of its own, which also frees the records' share of the buffer.
    async fn send(
        &mut self,
        request: Vec<Sealed>,
        acks: &mut tokio::task::JoinSet<()>,
    ) -> Result<(), String> {
        let pipeline = self.pipelines[self.routes[request[0].partition as usize]].clone();
        let by_partition: Vec<(i32, Vec<u8>, Vec<Vec<i64>>)> = request
            .into_iter()
            .map(|sealed| (sealed.partition, sealed.bytes, vec![sealed.intended_us]))
            .collect();
        let records: u64 = by_partition
            .iter()
            .flat_map(|(_, _, intended)| intended.iter().map(|i| i.len() as u64))
            .sum();
        let mut data = Vec::with_capacity(by_partition.len());
        let mut batches: Vec<(i32, Vec<Vec<i64>>)> = Vec::with_capacity(by_partition.len());
        // Each batch goes to the socket from the buffer it was built in: the request holds
        // a placeholder of its length.
        let mut records_in_order = Vec::with_capacity(by_partition.len());
        for (partition, bytes, intended) in by_partition {
            let bytes = Bytes::from(bytes);
            let field = match records_placeholder(bytes.len()) {
                Some(placeholder) => {
                    records_in_order.push(vec![bytes]);
                    placeholder
                }
                None => bytes,
            };
            data.push(
                PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(field)),
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
        let written_before = pipeline.bytes_written();
        let answer = pipeline
            .send_with_records(
                &request,
                self.produce_version,
                expect_response,
                Some(records_in_order),
            )
            .await
            .map_err(|error| error.to_string())?;
        let sent_us = now_us();
        {
            let mut waited = self.stats.batch_wait.lock().expect("latency lock");
            for (_, intended) in &batches {
                for first in intended.iter().filter_map(|batch| batch.first()) {
                    if self.stats.measured(*first) {
                        waited.record_n(sent_us - first, 1);
                    }
                }
            }
        }
        self.stats
            .wire_bytes(pipeline.bytes_written() - written_before, sent_us);
        self.totals.requests += 1;
        let buffered = self.buffered.clone();
        let record_bytes = self.workload.message_bytes as u64;
        let release = move || {
            buffered.fetch_sub(records * record_bytes, std::sync::atomic::Ordering::Relaxed)
        };
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
                release();
            }
            Some(answer) => {
                acks.spawn(async move {
                    let decoded = answer.decode::<ProduceResponse>(version).await;
                    release();
                    let response = match decoded {
                        Ok(response) => response,
                        Err(message) => return stats.error(message),
                    };
                    let ack_us = now_us();
                    let mut measured = 0;
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
                                    measured += stats.acknowledged(
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
                    stats.request_answered(sent_us, ack_us, measured);
                });
            }
        }
        Ok(())
    }
}
