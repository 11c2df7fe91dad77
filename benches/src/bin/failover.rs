//! Failover time of a three-broker ringlog cluster: a librdkafka producer (acks=all,
//! idempotent) sends one record per millisecond to a partition replicated on all three
//! brokers (min.insync.replicas 2); the partition's leader is killed with SIGKILL, and the
//! failover time is from the kill to the first acknowledgement of a record sent after it.
//! The killed broker is restarted on its data and the next kill waits until it is back in
//! the ISR. Repeated `--kills` times; every acknowledged record is then read back.
//!
//! Usage: `cargo run --release -p ringlog-benches --bin failover -- [--kills 20]
//! [--ringlog target/release/ringlog] [--session-timeout-ms 9000]
//! [--heartbeat-interval-ms 2000] [--name NAME]`
//!
//! Writes `results/cluster/<name>.json` and `.md`. The failover time is bounded below by
//! the broker session timeout: a killed broker is only noticed when it stops heartbeating.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::TopicPartitionList;
use serde_json::json;

const TOPIC: &str = "failover";
const SEND_EVERY: Duration = Duration::from_millis(1);
const SETTLE: Duration = Duration::from_secs(60);

struct Args {
    kills: usize,
    ringlog: String,
    session_timeout_ms: u64,
    heartbeat_interval_ms: u64,
    name: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        kills: 20,
        ringlog: "target/release/ringlog".to_string(),
        session_timeout_ms: 9000,
        heartbeat_interval_ms: 2000,
        name: "failover".to_string(),
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || given.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--kills" => args.kills = value()?.parse().map_err(|_| "--kills: a number")?,
            "--ringlog" => args.ringlog = value()?,
            "--session-timeout-ms" => {
                args.session_timeout_ms = value()?.parse().map_err(|_| "--session-timeout-ms")?
            }
            "--heartbeat-interval-ms" => {
                args.heartbeat_interval_ms =
                    value()?.parse().map_err(|_| "--heartbeat-interval-ms")?
            }
            "--name" => args.name = value()?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("address").to_string()
}

struct Broker {
    id: i32,
    flags: Vec<String>,
    address: String,
    log: std::path::PathBuf,
    child: Option<Child>,
}

impl Broker {
    fn start(&mut self, ringlog: &str) {
        let child = Command::new(ringlog)
            .arg("serve")
            .args(&self.flags)
            .env("RINGLOG_LOG", "warn,openraft=error")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .expect("broker log"),
            )
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {ringlog}: {error}"));
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
        * 1000.0
}

/// (leader, ISR) of partition 0 as `bootstrap` reports it.
fn placement(bootstrap: &str) -> Option<(i32, BTreeSet<i32>)> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .ok()?;
    let metadata = admin
        .inner()
        .fetch_metadata(Some(TOPIC), Duration::from_secs(5))
        .ok()?;
    let partition = metadata.topics().first()?.partitions().first()?;
    Some((
        partition.leader(),
        partition.isr().iter().copied().collect(),
    ))
}

/// Waits until partition 0 has a live leader and all three brokers in its ISR.
fn wait_for_full_isr(brokers: &[Broker]) -> i32 {
    let all: BTreeSet<i32> = brokers.iter().map(|broker| broker.id).collect();
    let deadline = Instant::now() + SETTLE;
    loop {
        for broker in brokers {
            if let Some((leader, isr)) = placement(&broker.address) {
                if isr == all && all.contains(&leader) {
                    return leader;
                }
            }
        }
        assert!(Instant::now() < deadline, "the ISR did not fill again");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One acknowledged record: when it was sent and acknowledged, and where it is.
#[derive(Clone, Copy)]
struct Ack {
    sent_ms: f64,
    acked_ms: f64,
    offset: i64,
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("failover: {message}");
            std::process::exit(2);
        }
    };
    let data = tempfile::tempdir().expect("temporary directory");
    let cluster_addresses: Vec<String> = (0..3).map(|_| free_address()).collect();
    let voters = cluster_addresses
        .iter()
        .enumerate()
        .map(|(index, address)| format!("{}@{address}", index + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut brokers: Vec<Broker> = cluster_addresses
        .iter()
        .enumerate()
        .map(|(index, cluster_address)| {
            let id = index as i32 + 1;
            let address = free_address();
            let dir = data.path().join(format!("broker-{id}"));
            let flags = [
                "--data-dir",
                dir.to_str().expect("utf-8 path"),
                "--listen",
                &address,
                "--cores",
                "1",
                "--node-id",
                &id.to_string(),
                "--voters",
                &voters,
                "--cluster-listen",
                cluster_address,
                "--broker-heartbeat-interval-ms",
                &args.heartbeat_interval_ms.to_string(),
                "--broker-session-timeout-ms",
                &args.session_timeout_ms.to_string(),
            ]
            .iter()
            .map(|flag| flag.to_string())
            .collect();
            Broker {
                id,
                flags,
                address,
                log: data.path().join(format!("broker-{id}.log")),
                child: None,
            }
        })
        .collect();
    for broker in &mut brokers {
        broker.start(&args.ringlog);
    }
    let bootstrap: String = brokers
        .iter()
        .map(|broker| broker.address.clone())
        .collect::<Vec<_>>()
        .join(",");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let deadline = Instant::now() + SETTLE;
    // The three brokers registered and listed by each.
    while !brokers.iter().all(|broker| {
        let admin: Option<AdminClient<DefaultClientContext>> = ClientConfig::new()
            .set("bootstrap.servers", &broker.address)
            .create()
            .ok();
        admin
            .and_then(|admin| {
                admin
                    .inner()
                    .fetch_metadata(None, Duration::from_secs(2))
                    .ok()
            })
            .is_some_and(|metadata| metadata.brokers().len() == 3)
    }) {
        assert!(Instant::now() < deadline, "the cluster did not form");
        std::thread::sleep(Duration::from_millis(200));
    }
    loop {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("admin client");
        let topic =
            NewTopic::new(TOPIC, 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
        let created = runtime.block_on(admin.create_topics(&[topic], &options));
        match created.as_deref() {
            Ok([Ok(_)]) | Ok([Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))]) => {
                break
            }
            _ => {}
        }
        if Instant::now() > deadline {
            for broker in &brokers {
                let log = std::fs::read_to_string(&broker.log).unwrap_or_default();
                eprintln!("broker {} log:\n{log}", broker.id);
            }
            panic!("cannot create the topic: {created:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_for_full_isr(&brokers);

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "120000")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "100")
        .create()
        .expect("producer");
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sending = {
        let (producer, acks, failed, stop) =
            (producer.clone(), acks.clone(), failed.clone(), stop.clone());
        runtime.spawn(async move {
            let mut number = 0u64;
            let mut tick = tokio::time::interval(SEND_EVERY);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                number += 1;
                let (producer, acks, failed) = (producer.clone(), acks.clone(), failed.clone());
                tokio::spawn(async move {
                    let value = format!("record {number}");
                    let sent_ms = now_ms();
                    let record = FutureRecord::<(), _>::to(TOPIC)
                        .partition(0)
                        .payload(&value);
                    match producer.send(record, Duration::from_secs(120)).await {
                        Ok(delivery) => acks.lock().expect("acks").push(Ack {
                            sent_ms,
                            acked_ms: now_ms(),
                            offset: delivery.offset,
                        }),
                        Err(_) => {
                            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        })
    };

    let mut failovers_ms: Vec<f64> = Vec::new();
    for kill in 0..args.kills {
        std::thread::sleep(Duration::from_secs(2));
        let leader = wait_for_full_isr(&brokers);
        let victim = brokers
            .iter()
            .position(|broker| broker.id == leader)
            .expect("the leader is a broker");
        let killed_ms = now_ms();
        brokers[victim].kill();
        let deadline = Instant::now() + SETTLE;
        let failover = loop {
            let first = acks
                .lock()
                .expect("acks")
                .iter()
                .filter(|ack| ack.sent_ms >= killed_ms)
                .map(|ack| ack.acked_ms)
                .fold(f64::INFINITY, f64::min);
            if first.is_finite() {
                break first - killed_ms;
            }
            assert!(
                Instant::now() < deadline,
                "no acknowledgement after kill {kill}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        println!(
            "kill {:2}: broker {leader} (leader) killed; first acknowledgement after {failover:.0} ms",
            kill + 1
        );
        failovers_ms.push(failover);
        brokers[victim].start(&args.ringlog);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    runtime.block_on(sending).expect("sender");
    let flushed = producer.flush(Duration::from_secs(120));
    assert!(flushed.is_ok(), "producer flush: {flushed:?}");
    // The delivery tasks record what the flush completed.
    std::thread::sleep(Duration::from_millis(500));
    drop(producer);

    // Every acknowledged record is in the log at its offset, once.
    let acked = acks.lock().expect("acks").clone();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "failover-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, rdkafka::Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let wanted: BTreeSet<i64> = acked.iter().map(|ack| ack.offset).collect();
    let mut seen = BTreeSet::new();
    let mut values = BTreeSet::new();
    let mut duplicates = 0u64;
    let deadline = Instant::now() + SETTLE;
    while !wanted.is_subset(&seen) && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            seen.insert(message.offset());
            if !values.insert(message.payload().unwrap_or_default().to_vec()) {
                duplicates += 1;
            }
        }
    }
    let missing = wanted.difference(&seen).count();

    let mut sorted = failovers_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let p50 = sorted[sorted.len() / 2];
    let max = *sorted.last().expect("at least one kill");
    let result = json!({
        "kills": args.kills,
        "broker_session_timeout_ms": args.session_timeout_ms,
        "broker_heartbeat_interval_ms": args.heartbeat_interval_ms,
        "send_every_ms": SEND_EVERY.as_millis() as u64,
        "failover_ms": failovers_ms,
        "failover_p50_ms": p50,
        "failover_max_ms": max,
        "acknowledged": acked.len(),
        "not_acknowledged": failed.load(std::sync::atomic::Ordering::Relaxed),
        "acknowledged_missing": missing,
        "duplicate_values": duplicates,
    });
    let out = std::path::Path::new("results/cluster");
    std::fs::create_dir_all(out).expect("results directory");
    std::fs::write(
        out.join(format!("{}.json", args.name)),
        serde_json::to_string_pretty(&result).expect("json") + "\n",
    )
    .expect("write json");
    let summary = format!(
        "# Failover: leader killed -> first acknowledged produce\n\n\
         Three ringlog brokers on one machine (`--cores 1` each), one partition with\n\
         replication factor 3 and min.insync.replicas 2; a librdkafka producer (acks=all,\n\
         idempotent) sends a record every {} ms. The leader is killed with SIGKILL {} times,\n\
         restarted each time, and back in the ISR before the next kill.\n\n\
         broker.session.timeout.ms {}, broker.heartbeat.interval.ms {}\n\n\
         | kills | failover p50 | failover max |\n|---|---|---|\n| {} | {:.0} ms | {:.0} ms |\n\n\
         acknowledged: {}; not acknowledged: {}; acknowledged but missing when read back: {};\n\
         values read twice: {}\n\n\
         Command: `cargo run --release -p ringlog-benches --bin failover -- --kills {} --session-timeout-ms {} --heartbeat-interval-ms {} --name {}`\n",
        SEND_EVERY.as_millis(),
        args.kills,
        args.session_timeout_ms,
        args.heartbeat_interval_ms,
        args.kills,
        p50,
        max,
        acked.len(),
        failed.load(std::sync::atomic::Ordering::Relaxed),
        missing,
        duplicates,
        args.kills,
        args.session_timeout_ms,
        args.heartbeat_interval_ms,
        args.name,
    );
    std::fs::write(out.join(format!("{}.md", args.name)), &summary).expect("write md");
    print!("{summary}");
    if missing > 0 || duplicates > 0 {
        std::process::exit(1);
    }
}
