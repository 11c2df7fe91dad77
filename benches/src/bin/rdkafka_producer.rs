//! A real client's view of produce throughput: one librdkafka producer (the rdkafka crate)
//! with librdkafka's default settings plus `acks`, sending 100-byte records without keys to
//! an 8-partition topic as fast as it accepts them. msg/s is what was acknowledged per
//! second of wall-clock time, from the first send to the last acknowledgement.
//!
//! Usage: `cargo run --release -p ringlog-benches --bin rdkafka_producer -- [--runs 3]
//! [--messages 5000000] [--acks all|1] [--bootstrap host:port] [--name NAME]`
//!
//! Without `--bootstrap` it starts ringlog in this process (default settings: every
//! acks=all answer after fdatasync) on a fresh temporary directory for each run. Writes
//! `results/rdkafka_producer/<name>.json` and `.md` (name: `acks-all` or `acks-1`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::ClientContext;
use serde_json::json;

const PARTITIONS: i32 = 8;
const RECORD_BYTES: usize = 100;

#[derive(Default)]
struct Counts {
    acked: AtomicU64,
    failed: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

struct Counting(Arc<Counts>);

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.0.first_error.lock().expect("error lock");
                first.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

struct Args {
    runs: usize,
    messages: u64,
    acks: String,
    bootstrap: Option<String>,
    name: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 3,
        messages: 5_000_000,
        acks: "all".into(),
        bootstrap: None,
        name: None,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || given.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--runs" => args.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--messages" => {
                args.messages = value()?.parse().map_err(|e| format!("--messages: {e}"))?
            }
            "--acks" => args.acks = value()?,
            "--bootstrap" => args.bootstrap = Some(value()?),
            "--name" => args.name = Some(value()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if !matches!(args.acks.as_str(), "all" | "1" | "-1") {
        return Err(format!("--acks {}: all or 1", args.acks));
    }
    Ok(args)
}

struct Run {
    messages_per_s: f64,
    seconds: f64,
    acked: u64,
    failed: u64,
    first_error: Option<String>,
}

fn create_topic(address: &str, topic: &str) -> Result<(), String> {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::CreateTopicsRequest;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(async {
        let mut client = protocol::client::Client::connect(address, "rdkafka-bench")
            .await
            .map_err(|error| format!("cannot reach {address}: {error}"))?;
        let create = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(ringlog_benches::harness::topic_name(topic))
                .with_num_partitions(PARTITIONS)
                .with_replication_factor(1)]);
        let response = client
            .send(&create)
            .await
            .map_err(|error| error.to_string())?;
        match response.topics.first().map(|topic| topic.error_code) {
            Some(0) => Ok(()),
            code => Err(format!("cannot create {topic}: error {code:?}")),
        }
    })
}

fn produce(address: &str, topic: &str, messages: u64, acks: &str) -> Result<Run, String> {
    let counts = Arc::new(Counts::default());
    let producer: BaseProducer<Counting> = ClientConfig::new()
        .set("bootstrap.servers", address)
        .set("acks", acks)
        .create_with_context(Counting(counts.clone()))
        .map_err(|error| format!("cannot create the producer: {error}"))?;
    let payload = [b'r'; RECORD_BYTES];
    let started = Instant::now();
    for sent in 0..messages {
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
                Err((error, _)) => return Err(format!("send failed: {error}")),
            }
        }
        if sent % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while counts.acked.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed) < messages {
        if Instant::now() > deadline {
            return Err("not every message was answered within 120 s".into());
        }
        producer.poll(Duration::from_millis(1));
    }
    let seconds = started.elapsed().as_secs_f64();
    let acked = counts.acked.load(Ordering::Relaxed);
    let first_error = counts.first_error.lock().expect("error lock").clone();
    Ok(Run {
        messages_per_s: acked as f64 / seconds,
        seconds,
        acked,
        failed: counts.failed.load(Ordering::Relaxed),
        first_error,
    })
}

fn one_run(args: &Args, run: usize) -> Result<Run, String> {
    let topic = format!("rdkafka-bench-{run}");
    let acks = if args.acks == "1" { "1" } else { "all" };
    match &args.bootstrap {
        Some(address) => {
            create_topic(address, &topic)?;
            produce(address, &topic, args.messages, acks)
        }
        None => {
            let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
            let broker = engine::server::Broker::start(engine::server::BrokerConfig {
                data_dir: dir.path().to_path_buf(),
                listen: "127.0.0.1:0".parse().expect("address"),
                pin_cores: false,
                ..engine::server::BrokerConfig::default()
            })
            .map_err(|error| format!("cannot start ringlog: {error}"))?;
            let address = broker.address.to_string();
            let result = create_topic(&address, &topic)
                .and_then(|()| produce(&address, &topic, args.messages, acks));
            broker.shutdown();
            result
        }
    }
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("rdkafka_producer: {message}");
            std::process::exit(2);
        }
    };
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        match one_run(&args, run) {
            Ok(result) => {
                println!(
                    "run {run}: {:.0} msg/s acknowledged ({} in {:.2} s, {} failed{})",
                    result.messages_per_s,
                    result.acked,
                    result.seconds,
                    result.failed,
                    result
                        .first_error
                        .as_ref()
                        .map(|error| format!(": {error}"))
                        .unwrap_or_default()
                );
                if result.failed > 0 {
                    eprintln!("rdkafka_producer: run {run} had failed deliveries");
                    std::process::exit(1);
                }
                runs.push(result);
            }
            Err(message) => {
                eprintln!("rdkafka_producer: run {run}: {message}");
                std::process::exit(1);
            }
        }
    }
    let mut rates: Vec<f64> = runs.iter().map(|run| run.messages_per_s).collect();
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let target = args
        .bootstrap
        .clone()
        .unwrap_or("ringlog (embedded)".into());
    let acks = if args.acks == "1" { "1" } else { "all" };
    let name = args.name.clone().unwrap_or(format!("acks-{acks}"));
    println!(
        "median {median:.0} msg/s over {} runs against {target}",
        runs.len()
    );
    let dir = std::path::Path::new("results/rdkafka_producer");
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        let report = json!({
            "target": target,
            "client": format!("librdkafka {}", rdkafka::util::get_rdkafka_version().1),
            "settings": { "acks": acks, "partitions": PARTITIONS, "record_bytes": RECORD_BYTES, "keys": "none", "other": "librdkafka defaults" },
            "messages_per_run": args.messages,
            "runs": runs.iter().map(|run| json!({"messages_per_s": run.messages_per_s, "seconds": run.seconds, "acked": run.acked, "failed": run.failed})).collect::<Vec<_>>(),
            "median_messages_per_s": median,
        });
        std::fs::write(
            dir.join(format!("{name}.json")),
            serde_json::to_string_pretty(&report).expect("json"),
        )?;
        let mut md = format!(
            "# One librdkafka producer, acks={acks}, {PARTITIONS} partitions, {RECORD_BYTES} B records\n\nTarget: {target}. Reproduce: `cargo run --release -p ringlog-benches --bin rdkafka_producer -- --acks {acks}`.\n\n| run | msg/s acknowledged | seconds |\n|---|---|---|\n"
        );
        for (at, run) in runs.iter().enumerate() {
            md.push_str(&format!(
                "| {} | {:.0} | {:.2} |\n",
                at + 1,
                run.messages_per_s,
                run.seconds
            ));
        }
        md.push_str(&format!("\nMedian: {median:.0} msg/s.\n"));
        std::fs::write(dir.join(format!("{name}.md")), md)
    });
    if let Err(error) = written {
        eprintln!("rdkafka_producer: cannot write results: {error}");
        std::process::exit(1);
    }
}
