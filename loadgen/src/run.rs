//! One run: make sure the topic exists, start consumers at the log ends, run producers on
//! their schedule, print a line per second, wait until consumers have everything that was
//! acknowledged, and gather the result.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{CreateTopicsRequest, MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use protocol::client::Client;

use crate::consumer::Consumer;
use crate::group::Membership;
use crate::producer::Producer;
use crate::result::{Checks, Cpu, Latencies, RunResult, Second, Throughput};
use crate::stats::{cpu_seconds, now_us, Stats};
use crate::workload::Workload;

/// Where the broker runs, for CPU accounting.
#[derive(Debug, Clone)]
pub enum BrokerProcess {
    /// In this process: every thread not named `loadgen` (shards, io_uring workers).
    Embedded,
    /// A local process.
    Pid(u32),
    /// Elsewhere: no CPU figures.
    Remote,
}

impl BrokerProcess {
    fn cpu(&self) -> Option<f64> {
        match self {
            // Everything of this process but loadgen's own threads (all named "loadgen"):
            // the shard threads and their io_uring workers, which come and go.
            BrokerProcess::Embedded => cpu_seconds(None, None)
                .zip(cpu_seconds(None, Some(&["loadgen"])))
                .map(|(all, loadgen)| all - loadgen),
            BrokerProcess::Pid(pid) => cpu_seconds(Some(*pid), None),
            BrokerProcess::Remote => None,
        }
    }

    /// Resident and peak resident bytes of a local broker process.
    fn memory(&self) -> (Option<u64>, Option<u64>) {
        match self {
            BrokerProcess::Pid(pid) => (
                process_memory(*pid, "VmRSS:"),
                process_memory(*pid, "VmHWM:"),
            ),
            BrokerProcess::Embedded | BrokerProcess::Remote => (None, None),
        }
    }
}

/// A "kB" line of /proc/PID/status, in bytes.
fn process_memory(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// CPU seconds of loadgen's own threads (main and runtime threads are named "loadgen").
fn loadgen_cpu() -> Option<f64> {
    cpu_seconds(None, Some(&["loadgen"]))
}

/// How long consumers may take, after producing stops, to catch up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// The log end offset of each partition. A broker that has just created the topic may not
/// lead its partitions yet (Kafka answers NOT_LEADER_OR_FOLLOWER or LEADER_NOT_AVAILABLE
/// for a moment after CreateTopics returns): retried, as a Kafka client does, for 20 s.
async fn log_ends(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
) -> Result<Vec<(i32, i64)>, String> {
    use protocol::client::ClientError;
    // UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER.
    const NOT_YET: [i16; 3] = [3, 5, 6];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match client.list_offsets(topic, partitions, -1).await {
            Ok(ends) => return Ok(ends),
            Err(ClientError::Refused { code, .. })
                if NOT_YET.contains(&code) && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// The log end offset of each partition, asked of its leader: also waits until every
/// leader serves its partitions (a cluster's brokers take their part a moment after the
/// topic is created).
async fn leader_log_ends(leaders: &[String], topic: &str) -> Result<Vec<(i32, i64)>, String> {
    let mut brokers: Vec<&String> = leaders.iter().collect();
    brokers.sort();
    brokers.dedup();
    let mut ends = Vec::with_capacity(leaders.len());
    for broker in brokers {
        let mine: Vec<i32> = (0..leaders.len() as i32)
            .filter(|p| &leaders[*p as usize] == broker)
            .collect();
        let mut client = Client::connect(broker, "loadgen-admin")
            .await
            .map_err(|error| format!("cannot reach the leader at {broker}: {error}"))?;
        ends.extend(log_ends(&mut client, topic, &mine).await?);
    }
    ends.sort();
    Ok(ends)
}

/// Creates the topic if it does not exist; returns the address of each partition's leader
/// (one broker's for all of them on a single node; a cluster's leaders spread).
async fn ensure_topic(client: &mut Client, workload: &Workload) -> Result<Vec<String>, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut created = false;
    loop {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(&workload.topic)))
            ]))
            .with_allow_auto_topic_creation(false);
        let version = client
            .version_for::<MetadataRequest>(9)
            .map_err(|e| e.to_string())?;
        let metadata = client
            .send_version(&request, version)
            .await
            .map_err(|error| format!("metadata: {error}"))?;
        let topic = metadata
            .topics
            .first()
            .ok_or("metadata returned no topic")?;
        if topic.error_code == 0 && !topic.partitions.is_empty() {
            let mut partitions: Vec<_> = topic.partitions.iter().collect();
            partitions.sort_by_key(|p| p.partition_index);
            let leaders: Option<Vec<String>> = partitions
                .iter()
                .map(|p| {
                    let broker = metadata.brokers.iter().find(|b| b.node_id == p.leader_id)?;
                    Some(format!("{}:{}", broker.host, broker.port))
                })
                .collect();
            if let Some(leaders) = leaders {
                return Ok(leaders);
            }
        } else if !created {
            let request = CreateTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic_name(&workload.topic))
                    .with_num_partitions(workload.partitions)
                    .with_replication_factor(workload.replication_factor)]);
            let version = client
                .version_for::<CreateTopicsRequest>(5)
                .map_err(|e| e.to_string())?;
            let response = client
                .send_version(&request, version)
                .await
                .map_err(|error| format!("create topic: {error}"))?;
            if let Some(result) = response.topics.first() {
                // 36: created meanwhile by someone else.
                if result.error_code != 0 && result.error_code != 36 {
                    return Err(format!(
                        "cannot create topic '{}': {}",
                        workload.topic,
                        protocol::error_code::describe(result.error_code)
                    ));
                }
            }
            created = true;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "topic '{}' did not appear in metadata",
                workload.topic
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `workload` against `address`; prints a line per second unless `quiet`.
pub async fn run(
    address: &str,
    mut workload: Workload,
    broker: BrokerProcess,
    quiet: bool,
) -> Result<RunResult, String> {
    let mut admin = Client::connect(address, "loadgen-admin")
        .await
        .map_err(|error| format!("cannot reach the broker at {address}: {error}"))?;
    let leaders = ensure_topic(&mut admin, &workload).await?;
    let partitions = leaders.len() as i32;
    let mut brokers = leaders.clone();
    brokers.sort();
    brokers.dedup();
    if brokers.len() > 1 && workload.consumers > 0 {
        return Err(format!(
            "the partitions of '{}' are led by {} brokers; loadgen's consumers read through one: run with --consumers 0 against a cluster",
            workload.topic,
            brokers.len()
        ));
    }
    if partitions != workload.partitions {
        eprintln!(
            "topic {} exists with {partitions} partitions; using them",
            workload.topic
        );
        workload.partitions = partitions;
    }
    let produce_version = admin
        .version_for::<ProduceRequest>(9)
        .map_err(|error| error.to_string())?;
    let ends = leader_log_ends(&leaders, &workload.topic).await?;
    let workload = Arc::new(workload);

    let done = Arc::new(AtomicBool::new(false));
    let mut consumers = Vec::new();
    // Who reads what: a fixed share each, or what the group hands out.
    let mut shares: Vec<(Vec<i32>, Option<Membership>)> = Vec::new();
    match &workload.consumer_group {
        None => {
            for id in 0..workload.consumers {
                let mine = (0..partitions)
                    .filter(|p| (*p as usize) % workload.consumers == id)
                    .collect();
                shares.push((mine, None));
            }
        }
        Some(group) => {
            let names: Vec<String> = (0..workload.consumers)
                .map(|id| format!("loadgen-consumer-{id}"))
                .collect();
            let joins = names
                .iter()
                .map(|name| Membership::join(address, group, &workload.topic, partitions, name));
            for joined in futures_util::future::join_all(joins).await {
                let membership = joined?;
                shares.push((membership.partitions.clone(), Some(membership)));
            }
        }
    }
    // The schedule starts once every consumer knows its partitions (a group's first
    // rebalance can take seconds).
    let start_us = now_us() + 300_000;
    let measure_from = start_us + workload.warmup.as_micros() as i64;
    let stop_us = measure_from + workload.duration.as_micros() as i64;
    let stats = Arc::new(Stats::new(measure_from, stop_us));
    for (id, (mine, membership)) in shares.into_iter().enumerate() {
        let positions: Vec<(i32, i64)> = ends
            .iter()
            .copied()
            .filter(|(p, _)| mine.contains(p))
            .collect();
        let consumer =
            Consumer::connect(id, address, workload.clone(), stats.clone(), positions).await?;
        let done = done.clone();
        let stats = stats.clone();
        let topic = workload.topic.clone();
        consumers.push(tokio::spawn(async move {
            if let Some(membership) = &membership {
                membership.keep_alive(stats.clone());
            }
            let positions = consumer.run(done).await;
            if let Some(membership) = membership {
                if let Err(message) = membership.finish(&topic, &positions).await {
                    stats.error(message);
                }
            }
        }));
    }
    let mut producers = Vec::new();
    for id in 0..workload.producers {
        let producer = Producer::connect(
            id as u32,
            &leaders,
            workload.clone(),
            stats.clone(),
            produce_version,
        )
        .await?;
        producers.push(tokio::spawn(producer.run(start_us, stop_us)));
    }

    // A line per second while producing.
    let mut series = Vec::new();
    let mut cpu_from: Option<(Option<f64>, Option<f64>, i64)> = None;
    let mut cpu_until = None;
    let mut memory_at_end = (None, None);
    let storage_totals =
        || matches!(broker, BrokerProcess::Embedded).then(engine::storage::stats::totals);
    let (mut storage_from, mut storage_until) = (None, None);
    let mut last = (0u64, 0u64, now_us());
    let mut last_storage = storage_totals();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = now_us();
        if cpu_from.is_none() && now >= measure_from {
            cpu_from = Some((broker.cpu(), loadgen_cpu(), now));
            storage_from = storage_totals();
        }
        if cpu_until.is_none() && now >= stop_us {
            cpu_until = Some((broker.cpu(), loadgen_cpu(), now));
            memory_at_end = broker.memory();
            storage_until = storage_totals();
        }
        let acked = stats.acked.load(Ordering::Relaxed);
        let consumed = stats.consumed.load(Ordering::Relaxed);
        let seconds = (now - last.2) as f64 / 1e6;
        let quantile_ms =
            |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let (p50, p99) = stats
            .produce
            .lock()
            .expect("latency lock")
            .take_interval(|h| (quantile_ms(h, 0.5), quantile_ms(h, 0.99)))
            .unwrap_or((f64::NAN, f64::NAN));
        let request_p99 = stats
            .request
            .lock()
            .expect("latency lock")
            .take_interval(|h| quantile_ms(h, 0.99))
            .unwrap_or(f64::NAN);
        let batch_wait_max = stats
            .batch_wait
            .lock()
            .expect("latency lock")
            .take_interval(|h| h.max() as f64 / 1000.0)
            .unwrap_or(f64::NAN);
        let e2e_p99 = stats
            .end_to_end
            .lock()
            .expect("latency lock")
            .take_interval(|h| quantile_ms(h, 0.99))
            .unwrap_or(f64::NAN);
        let storage_now = storage_totals();
        let storage_second = last_storage
            .zip(storage_now)
            .map(|(from, until)| until.since(&from));
        last_storage = storage_now;
        let second = Second {
            t: (now - start_us) as f64 / 1e6,
            fdatasyncs: storage_second.map(|s| s.fsyncs),
            fdatasync_mean_us: storage_second.map(|s| s.fsync_mean_us()),
            fdatasyncs_over_2500us: storage_second.map(|s| s.fsyncs_over_2500us),
            fdatasyncs_over_10ms: storage_second.map(|s| s.fsyncs_over_10ms),
            writes_over_10ms: storage_second.map(|s| s.writes_over_10ms),
            rounds_over_10ms: storage_second.map(|s| s.rounds_over_10ms),
            synced_writes: storage_second.map(|s| s.synced_writes),
            synced_writes_over_2500us: storage_second.map(|s| s.synced_writes_over_2500us),
            synced_writes_over_10ms: storage_second.map(|s| s.synced_writes_over_10ms),
            produced_per_s: (acked - last.0) as f64 / seconds,
            produced_mb_per_s: (acked - last.0) as f64 * workload.message_bytes as f64
                / seconds
                / 1e6,
            consumed_per_s: (consumed - last.1) as f64 / seconds,
            produce_p50_ms: p50,
            produce_p99_ms: p99,
            request_p99_ms: request_p99,
            batch_wait_max_ms: batch_wait_max,
            producer_late_max_ms: stats.producer_late_max_us.swap(0, Ordering::Relaxed) as f64
                / 1000.0,
            end_to_end_p99_ms: e2e_p99,
            lag: acked.saturating_sub(consumed),
            backlog: if workload.rate > 0 {
                let scheduled = ((now.min(stop_us) - start_us).max(0) as f64 * workload.rate as f64
                    / 1e6) as u64;
                scheduled.saturating_sub(acked)
            } else {
                stats.sent.load(Ordering::Relaxed).saturating_sub(acked)
            },
        };
        if !quiet {
            println!("{}", second.line(now < measure_from));
        }
        series.push(second);
        last = (acked, consumed, now);
        if producers.iter().all(|p| p.is_finished()) {
            break;
        }
    }
    let mut totals = Vec::new();
    for producer in producers {
        totals.push(
            producer
                .await
                .map_err(|error| format!("producer task: {error}"))?,
        );
    }
    // Producers end once everything they sent is answered: what came after the window is
    // the drain.
    let drained_at_us = totals
        .iter()
        .map(|t| t.finished_us)
        .max()
        .unwrap_or(stop_us);
    let cpu_until = cpu_until.unwrap_or_else(|| {
        memory_at_end = broker.memory();
        (broker.cpu(), loadgen_cpu(), now_us())
    });
    let storage_until = storage_until.or_else(storage_totals);

    // Consumers catch up with everything acknowledged.
    let drained_by = std::time::Instant::now() + DRAIN_TIMEOUT;
    let mut drained = workload.consumers == 0;
    while !drained
        && std::time::Instant::now() < drained_by
        && !stats.failed.load(Ordering::Relaxed)
    {
        let produced = stats.produced.lock().expect("produced lock").clone();
        drained = {
            let sequences = stats.sequences.lock().expect("sequences lock");
            produced.iter().all(|((partition, producer), count)| {
                sequences.received(*partition, *producer) >= *count
            })
        };
        if !drained {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    done.store(true, Ordering::Relaxed);
    for consumer in consumers {
        let _ = consumer.await;
    }

    let measured_seconds = workload.duration.as_secs_f64();
    let (checks, missing_detail) = {
        let produced = stats.produced.lock().expect("produced lock");
        let sequences = stats.sequences.lock().expect("sequences lock");
        let mut missing = 0u64;
        let mut detail = None;
        if workload.consumers > 0 {
            for ((partition, producer), count) in produced.iter() {
                let received = sequences.received(*partition, *producer);
                if received < *count {
                    missing += count - received;
                    detail.get_or_insert_with(|| {
                        format!("partition {partition}, producer {producer}: {received} of {count} acknowledged records consumed")
                    });
                }
            }
        }
        (
            Checks {
                checked: workload.consumers > 0,
                missing,
                repeated: sequences.repeated,
                out_of_order: sequences.out_of_order,
                first_problem: sequences.first_problem.clone().or(detail.clone()),
                errors: stats.errors.lock().expect("errors lock").clone(),
            },
            detail,
        )
    };
    let _ = missing_detail;
    let produce = stats.produce.lock().expect("latency lock");
    let request = stats.request.lock().expect("latency lock");
    let batch_wait = stats.batch_wait.lock().expect("latency lock");
    let end_to_end = stats.end_to_end.lock().expect("latency lock");
    let consumed_measured = stats.consumed_measured.load(Ordering::Relaxed);
    let cpu = match cpu_from {
        Some((broker_from, loadgen_from, from_us)) => {
            let seconds = (cpu_until.2 - from_us) as f64 / 1e6;
            let broker_s = broker_from.zip(cpu_until.0).map(|(a, b)| b - a);
            let loadgen_s = loadgen_from.zip(cpu_until.1).map(|(a, b)| b - a);
            let acked_in_window = stats.acked_in_window.load(Ordering::Relaxed) as f64;
            Cpu {
                window_s: seconds,
                broker_s,
                loadgen_s,
                records_per_broker_cpu_s: broker_s
                    .filter(|s| *s > 0.0)
                    .map(|s| acked_in_window / s),
                broker_rss_bytes: memory_at_end.0,
                broker_peak_rss_bytes: memory_at_end.1,
            }
        }
        None => Cpu::default(),
    };
    let records_total: u64 = totals.iter().map(|t| t.records).sum();
    let offered: u64 = totals.iter().map(|t| t.offered_measured).sum();
    let acked_in_window = stats.acked_in_window.load(Ordering::Relaxed);
    let acked_by_end = stats.acked_by_window_end.load(Ordering::Relaxed);
    let batches_total: u64 = totals.iter().map(|t| t.batches).sum();
    let storage = match (storage_from, storage_until, cpu_from) {
        (Some(from), Some(until), Some((_, _, from_us))) => {
            Some(crate::result::BrokerStorage::between(
                from,
                until,
                (cpu_until.2 - from_us) as f64 / 1e6,
            ))
        }
        _ => None,
    };
    let mut result = RunResult::new(
        (*workload).clone(),
        Throughput {
            records: acked_in_window,
            records_per_s: acked_in_window as f64 / measured_seconds,
            mb_per_s: acked_in_window as f64 * workload.message_bytes as f64
                / measured_seconds
                / 1e6,
            records_per_batch: records_total as f64 / batches_total.max(1) as f64,
            offered_per_s: (workload.rate > 0).then(|| offered as f64 / measured_seconds),
            backlog_at_end: records_total.saturating_sub(acked_by_end),
            wire_mb_per_s: stats.wire_bytes_in_window.load(Ordering::Relaxed) as f64
                / measured_seconds
                / 1e6,
            drained_records: stats
                .acked
                .load(Ordering::Relaxed)
                .saturating_sub(acked_by_end),
            drain_s: (drained_at_us - stop_us).max(0) as f64 / 1e6,
        },
        Throughput {
            records: consumed_measured,
            records_per_s: consumed_measured as f64 / measured_seconds,
            mb_per_s: consumed_measured as f64 * workload.message_bytes as f64
                / measured_seconds
                / 1e6,
            ..Throughput::default()
        },
        (workload.acks != 0).then(|| Latencies::from(&produce.total)),
        (workload.consumers > 0).then(|| Latencies::from(&end_to_end.total)),
        cpu,
        checks,
        series,
    );
    result.storage = storage;
    result.request_latency = (workload.acks != 0).then(|| Latencies::from(&request.total));
    result.batch_wait = (!batch_wait.total.is_empty()).then(|| Latencies::from(&batch_wait.total));
    Ok(result)
}
