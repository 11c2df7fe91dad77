//! `loadgen`: throughput and latency against ringlog or any Kafka broker.
//!
//! With no arguments it starts ringlog in this process on a temporary data directory and a
//! free port, runs the standard workload (1M msg/s of 100-byte records, acks=all, durable),
//! prints the summary, writes the result to results/loadgen/, and cleans up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use loadgen::report;
use loadgen::result::{BrokerInfo, RunResult};
use loadgen::run::{run, BrokerProcess};
use loadgen::workload::{
    parse_acks, parse_bytes, parse_compression, parse_duration, Keys, Workload,
};

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Throughput and p99 latency against ringlog or any Kafka broker (no arguments: the standard workload on an embedded ringlog)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One run.
    Run {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        workload: WorkloadArgs,
        #[command(flatten)]
        output: Output,
    },
    /// One run per combination of the comma-separated --batch-bytes, --compression and
    /// --acks values; one table and one chart.
    Sweep {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        workload: WorkloadArgs,
        #[command(flatten)]
        output: Output,
    },
    /// The same workload against several brokers, side by side.
    Compare {
        /// name=host:port, or name=host:port@pid for a local broker's CPU time; repeat.
        /// "ringlog=embedded" starts one here.
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        /// A line for the result saying how the brokers were set up (durability, heap,
        /// threads...); repeat.
        #[arg(long = "note")]
        notes: Vec<String>,
        /// After the runs, measure the disk's durable ceiling in this directory (O_DIRECT
        /// writes of 4 KiB and of 256 KiB, fdatasync after each, about 4 s each), for the
        /// result beside the brokers' figures.
        #[arg(long)]
        disk_probe_dir: Option<PathBuf>,
        /// While one broker is driven, stop the other local brokers (SIGSTOP, and SIGCONT
        /// after), so that an idle broker's timers and garbage collector take no CPU from
        /// the measured one on a shared machine.
        #[arg(long)]
        freeze_others: bool,
        #[command(flatten)]
        workload: WorkloadArgs,
        #[command(flatten)]
        output: Output,
    },
    /// The disk alone: O_DIRECT writes into written blocks, fdatasync after each, one at a
    /// time per file; --files syncs several side by side, --busy-threads spins that many
    /// threads on the CPUs meanwhile.
    DiskProbe {
        /// A directory on the disk to measure.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value = "64k", value_parser = parse_bytes)]
        write_bytes: usize,
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 0)]
        busy_threads: usize,
        /// Files written and synced side by side, a thread each.
        #[arg(long, default_value_t = 1)]
        files: usize,
        /// Write into fallocated blocks never written before (as a new broker's appends
        /// do) instead of written ones; the probe ends early at its 4 GiB of files' end.
        #[arg(long)]
        fallocated: bool,
    },
}

#[derive(Debug, Args, Clone)]
struct Target {
    /// A broker to drive (host:port). Without it, ringlog starts in this process.
    #[arg(long, short = 'b')]
    bootstrap: Option<String>,
    /// The broker's pid when it runs on this machine, for its CPU time.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Data directory of the embedded broker [default: a temporary directory, removed
    /// afterwards].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Shards of the embedded broker [default: one per core].
    #[arg(long)]
    broker_cores: Option<usize>,
    /// The embedded broker skips fdatasync (flush on demand only): for comparisons with
    /// brokers that do not sync.
    #[arg(long)]
    no_fsync: bool,
    /// How the embedded broker reserves segment space: fallocate (its default), zero-fill
    /// or none.
    #[arg(long)]
    broker_preallocation: Option<engine::storage::Preallocation>,
    /// Bytes of recent batches each shard of the embedded broker keeps in memory for the
    /// consumers (`ringlog serve --tail-cache-bytes`) [default: the broker's, 256m].
    #[arg(long, value_parser = parse_bytes)]
    broker_tail_cache_bytes: Option<usize>,
    /// `segment.bytes` of the embedded broker's logs [default: the broker's, 1 GiB].
    #[arg(long, value_parser = parse_bytes)]
    broker_segment_bytes: Option<usize>,
    /// `retention.bytes` of each of the embedded broker's partitions [default: unlimited].
    /// With a small `--broker-segment-bytes` and `--broker-retention-check-ms`, a run
    /// reaches the steady state of a broker that has run for a while: segments deleted by
    /// retention are recycled, so appends go into blocks written before.
    #[arg(long, value_parser = parse_bytes)]
    broker_retention_bytes: Option<usize>,
    /// Milliseconds between the embedded broker's retention checks
    /// (`log.retention.check.interval.ms`) [default: the broker's, 300000].
    #[arg(long)]
    broker_retention_check_ms: Option<u64>,
    /// After the run, measure the disk's durable ceiling in the embedded broker's data
    /// directory (O_DIRECT writes of the broker's mean write size, fdatasync after each,
    /// about 4 s, into blocks written before) and report the broker's share of it; then the
    /// same into fallocated blocks never written (as a new segment's), about 3 s more.
    #[arg(long)]
    disk_probe: bool,
}

#[derive(Debug, Args, Clone)]
struct WorkloadArgs {
    #[arg(long, default_value = "loadgen")]
    topic: String,
    /// Partitions, when the topic is created.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Replicas of each partition, when the topic is created (against a cluster).
    #[arg(long, default_value_t = 1)]
    replication_factor: i16,
    #[arg(long, default_value_t = 2)]
    producers: usize,
    #[arg(long, default_value_t = 2)]
    consumers: usize,
    #[arg(long, default_value_t = 100)]
    message_bytes: usize,
    /// Records per second over all producers; 0 finds the maximum.
    #[arg(long, default_value_t = 1_000_000)]
    rate: u64,
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Excluded from every figure.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    warmup: Duration,
    /// Target bytes per batch (sweep: a comma-separated list).
    #[arg(long, default_value = "64k", value_delimiter = ',')]
    batch_bytes: Vec<String>,
    #[arg(long, default_value_t = 1)]
    linger_ms: u64,
    /// Unanswered requests per producer connection.
    #[arg(long, default_value_t = 5)]
    in_flight: usize,
    /// Most bytes of one Produce request (max.request.size); one batch per partition per
    /// request.
    #[arg(long, default_value = "1m", value_parser = parse_bytes)]
    max_request_bytes: usize,
    /// Bytes of records each producer holds generated and not yet acknowledged
    /// (buffer.memory); past it the schedule runs on and records wait.
    #[arg(long, default_value = "32m", value_parser = parse_bytes)]
    buffer_bytes: usize,
    /// none, gzip, lz4 or zstd (sweep: a comma-separated list).
    #[arg(long, default_value = "none", value_delimiter = ',')]
    compression: Vec<String>,
    /// 0, 1 or all (sweep: a comma-separated list).
    #[arg(long, default_value = "all", value_delimiter = ',')]
    acks: Vec<String>,
    /// none, round-robin:K, uniform:K, hot:K:SHARE (keyed records use Java's murmur2
    /// partitioner).
    #[arg(long, default_value = "none")]
    keys: String,
    #[arg(long, default_value_t = 100)]
    fetch_max_wait_ms: u64,
    #[arg(long, default_value = "16m", value_parser = parse_bytes)]
    fetch_max_bytes: usize,
    /// Consumers join this consumer group (range assignment) instead of splitting the
    /// partitions among themselves.
    #[arg(long)]
    consumer_group: Option<String>,
    /// PASS needs produce p99 at most this.
    #[arg(long, default_value_t = 5.0)]
    p99_target_ms: f64,
    /// PASS needs this many msg/s [default: --rate, or 1,000,000 with --rate 0].
    #[arg(long)]
    target_rate: Option<u64>,
}

/// The one value of a setting that only `sweep` may list.
fn single<'a>(flag: &str, values: &'a [String]) -> Result<&'a str, String> {
    match values {
        [one] => Ok(one),
        _ => Err(format!(
            "--{flag} {}: give one value (loadgen sweep runs lists)",
            values.join(",")
        )),
    }
}

impl WorkloadArgs {
    fn workload(&self) -> Result<Workload, String> {
        if self.producers == 0 || self.partitions <= 0 {
            return Err("at least one producer and one partition".into());
        }
        let batch_bytes = parse_bytes(single("batch-bytes", &self.batch_bytes)?)?;
        if batch_bytes > self.max_request_bytes {
            return Err(format!(
                "--batch-bytes {batch_bytes} exceeds --max-request-bytes {}: a batch must fit in a request",
                self.max_request_bytes
            ));
        }
        if self.buffer_bytes < batch_bytes {
            return Err(format!(
                "--buffer-bytes {} is smaller than one batch ({batch_bytes})",
                self.buffer_bytes
            ));
        }
        if self.message_bytes < loadgen::payload::STAMP_BYTES {
            return Err(format!(
                "--message-bytes {}: records carry a {}-byte stamp",
                self.message_bytes,
                loadgen::payload::STAMP_BYTES
            ));
        }
        Ok(Workload {
            topic: self.topic.clone(),
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            producers: self.producers,
            consumers: self.consumers,
            message_bytes: self.message_bytes,
            rate: self.rate,
            duration: self.duration,
            warmup: self.warmup,
            batch_bytes,
            linger: Duration::from_millis(self.linger_ms),
            in_flight: self.in_flight.max(1),
            max_request_bytes: self.max_request_bytes,
            buffer_bytes: self.buffer_bytes,
            compression: parse_compression(single("compression", &self.compression)?)?,
            acks: parse_acks(single("acks", &self.acks)?)?,
            keys: Keys::parse(&self.keys)?,
            fetch_max_wait: Duration::from_millis(self.fetch_max_wait_ms),
            fetch_max_bytes: self.fetch_max_bytes.min(i32::MAX as usize) as i32,
            consumer_group: self.consumer_group.clone(),
            p99_target_ms: self.p99_target_ms,
            target_rate: self.target_rate.unwrap_or(if self.rate == 0 {
                1_000_000
            } else {
                self.rate
            }),
        })
    }
}

#[derive(Debug, Args, Clone)]
struct Output {
    /// Where results go.
    #[arg(long, default_value = "results/loadgen")]
    out: PathBuf,
    /// File name of the result [default: derived from the settings and time].
    #[arg(long)]
    name: Option<String>,
    /// No line per second.
    #[arg(long)]
    quiet: bool,
}

/// A ringlog broker in this process, on a temporary directory unless given one.
struct Embedded {
    broker: Option<engine::server::Broker>,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    settings: Vec<(String, String)>,
}

impl Embedded {
    fn start(target: &Target) -> Result<Embedded, Failure> {
        let (dir, temp) = match &target.data_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("loadgen-ringlog-")
                    .tempdir()
                    .map_err(|error| {
                        Failure::Run(format!("cannot make a temporary data directory: {error}"))
                    })?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let mut config = engine::server::BrokerConfig {
            data_dir: dir.clone(),
            listen: "127.0.0.1:0".parse().expect("address"),
            pin_cores: false,
            ..engine::server::BrokerConfig::default()
        };
        if let Some(cores) = target.broker_cores {
            config.cores = cores.max(1);
        }
        if target.no_fsync {
            config.log_defaults.flush_policy = engine::storage::FlushPolicy::OnDemand;
        }
        if let Some(preallocation) = target.broker_preallocation {
            config.log_defaults.preallocation = preallocation;
        }
        if let Some(bytes) = target.broker_tail_cache_bytes {
            config.tail_cache_bytes_per_shard = bytes;
        }
        if let Some(bytes) = target.broker_segment_bytes {
            config.log_defaults.segment_bytes = bytes as u64;
        }
        if let Some(bytes) = target.broker_retention_bytes {
            config.log_defaults.retention_bytes = Some(bytes as u64);
        }
        if let Some(ms) = target.broker_retention_check_ms {
            config.retention_check_interval = Duration::from_millis(ms.max(1));
        }
        config
            .log_defaults
            .validate()
            .map_err(|error| Failure::Settings(format!("embedded broker: {error}")))?;
        if let Err(reason) = engine::io::probe(config.io_backend) {
            eprintln!("{reason}; using the portable backend");
            config.io_backend = engine::io::Backend::Portable;
        }
        let settings = vec![
            ("cores".to_string(), config.cores.to_string()),
            ("io_backend".to_string(), format!("{:?}", config.io_backend)),
            (
                "flush".to_string(),
                format!("{:?}", config.log_defaults.flush_policy),
            ),
            (
                "preallocation".to_string(),
                format!("{:?}", config.log_defaults.preallocation),
            ),
            (
                "tail_cache_bytes_per_shard".to_string(),
                config.tail_cache_bytes_per_shard.to_string(),
            ),
            (
                "segment_bytes".to_string(),
                config.log_defaults.segment_bytes.to_string(),
            ),
            (
                "retention_bytes".to_string(),
                config
                    .log_defaults
                    .retention_bytes
                    .map_or("unlimited".to_string(), |bytes| bytes.to_string()),
            ),
            (
                "retention_check_ms".to_string(),
                config.retention_check_interval.as_millis().to_string(),
            ),
            ("data_dir".to_string(), dir.display().to_string()),
        ];
        let broker = engine::server::Broker::start(config)
            .map_err(|error| Failure::Run(format!("cannot start the embedded broker: {error}")))?;
        Ok(Embedded {
            broker: Some(broker),
            dir: dir.clone(),
            _temp: temp,
            settings,
        })
    }

    fn address(&self) -> String {
        self.broker
            .as_ref()
            .map(|b| b.address.to_string())
            .unwrap_or_default()
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(broker) = self.broker.take() {
            broker.shutdown();
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("loadgen")
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))
}

/// One run against a target (embedded when it has no address).
/// Why loadgen ends without a verdict: bad settings (exit status 2), or a run that could
/// not go on because the broker refused or dropped it (exit status 1).
enum Failure {
    Settings(String),
    Run(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Settings(message)
    }
}

fn run_one(
    target: &Target,
    workload: Workload,
    name: &str,
    quiet: bool,
) -> Result<RunResult, Failure> {
    let embedded = match &target.bootstrap {
        Some(_) => None,
        None => Some(Embedded::start(target)?),
    };
    let address = match (&target.bootstrap, &embedded) {
        (Some(address), _) => address.clone(),
        (None, Some(embedded)) => embedded.address(),
        (None, None) => unreachable!("embedded when no address"),
    };
    let process = match (&embedded, target.broker_pid) {
        (Some(_), _) => BrokerProcess::Embedded,
        (None, Some(pid)) => BrokerProcess::Pid(pid),
        (None, None) => BrokerProcess::Remote,
    };
    if !quiet {
        println!("{name}: {} against {address}", workload.label());
    }
    let mut result = runtime()?
        .block_on(run(&address, workload, process, quiet))
        .map_err(Failure::Run)?;
    if let (true, Some(embedded), Some(storage)) =
        (target.disk_probe, &embedded, result.storage.as_mut())
    {
        let probe = |space| {
            loadgen::disk::measure(&embedded.dir, storage.write_bytes_mean as usize, space)
                .map_err(|error| format!("disk probe in {}: {error}", embedded.dir.display()))
        };
        let ceiling = probe(loadgen::disk::Space::Written)?;
        // The second figure is context: a filesystem without fallocate, or without 4 GiB
        // to spare, leaves it out and says why rather than failing the run.
        let fallocated = probe(loadgen::disk::Space::Fallocated)
            .map_err(|message| eprintln!("{message} (into fallocated blocks; left out)"))
            .ok();
        storage.set_ceiling(ceiling, fallocated);
    }
    result.broker = BrokerInfo {
        name: name.to_string(),
        address,
        embedded: embedded.is_some(),
        settings: embedded
            .as_ref()
            .map(|e| e.settings.clone())
            .unwrap_or_default(),
    };
    Ok(result)
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|error| error.to_string())?;
    std::fs::write(path, text + "\n")
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn file_stem(output: &Output, default: String) -> Result<PathBuf, String> {
    std::fs::create_dir_all(&output.out)
        .map_err(|error| format!("cannot create {}: {error}", output.out.display()))?;
    Ok(output.out.join(output.name.clone().unwrap_or(default)))
}

fn timestamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "")
}

fn finish_run(result: &RunResult, output: &Output, default: String) -> Result<bool, Failure> {
    let stem = file_stem(output, default)?;
    let json = stem.with_extension("json");
    let svg = stem.with_extension("svg");
    write_json(&json, result)?;
    report::run_svg(result, &svg)?;
    println!("{}", result.summary());
    println!("wrote {} and {}", json.display(), svg.display());
    Ok(result.pass)
}

fn main() {
    let cli = Cli::parse();
    let outcome = match cli.command {
        None => {
            // The standard workload on an embedded ringlog.
            let target = Target {
                bootstrap: None,
                broker_pid: None,
                data_dir: None,
                broker_cores: None,
                no_fsync: false,
                broker_preallocation: None,
                broker_tail_cache_bytes: None,
                broker_segment_bytes: None,
                broker_retention_bytes: None,
                broker_retention_check_ms: None,
                disk_probe: false,
            };
            let output = Output {
                out: PathBuf::from("results/loadgen"),
                name: Some("standard".into()),
                quiet: false,
            };
            run_one(&target, Workload::standard("loadgen"), "ringlog", false)
                .and_then(|result| finish_run(&result, &output, String::new()))
        }
        Some(Command::Run {
            target,
            workload,
            output,
        }) => workload
            .workload()
            .map_err(Failure::from)
            .and_then(|workload| {
                let name = if target.bootstrap.is_some() {
                    "broker"
                } else {
                    "ringlog"
                };
                let default = format!("run-{}", timestamp());
                run_one(&target, workload, name, output.quiet)
                    .and_then(|result| finish_run(&result, &output, default))
            }),
        Some(Command::Sweep {
            target,
            workload,
            output,
        }) => sweep(&target, &workload, &output),
        Some(Command::Compare {
            targets,
            notes,
            disk_probe_dir,
            freeze_others,
            workload,
            output,
        }) => compare(
            &targets,
            &notes,
            disk_probe_dir.as_deref(),
            freeze_others,
            &workload,
            &output,
        ),
        Some(Command::DiskProbe {
            dir,
            write_bytes,
            duration,
            busy_threads,
            files,
            fallocated,
        }) => {
            let space = match fallocated {
                true => loadgen::disk::Space::Fallocated,
                false => loadgen::disk::Space::Written,
            };
            disk_probe(&dir, write_bytes, duration, busy_threads, files, space)
        }
    };
    match outcome {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(Failure::Settings(message)) => {
            eprintln!("loadgen: {message}");
            std::process::exit(2);
        }
        Err(Failure::Run(message)) => {
            eprintln!("loadgen: {message}");
            std::process::exit(1);
        }
    }
}

fn disk_probe(
    dir: &Path,
    write_bytes: usize,
    duration: Duration,
    busy_threads: usize,
    files: usize,
    space: loadgen::disk::Space,
) -> Result<bool, Failure> {
    if duration.is_zero() {
        return Err(Failure::Settings("--duration must be above zero".into()));
    }
    if !(1..=64).contains(&files) {
        return Err(Failure::Settings("--files must be 1 to 64".into()));
    }
    let probe = loadgen::disk::measure_with(dir, write_bytes, duration, busy_threads, files, space)
        .map_err(|error| Failure::Run(format!("disk probe in {}: {error}", dir.display())))?;
    println!(
        "disk probe in {}: {} writes of {} KiB + fdatasync into {} blocks in {:.1} s to {} files \
         side by side with {} busy threads: {:.0} MB/s durable, fdatasync p50 {} us, p99 {} us, \
         max {} us, {} over 2.5 ms ({:.1}/s)",
        dir.display(),
        probe.writes,
        probe.write_bytes / 1024,
        probe.space.name(),
        probe.seconds,
        probe.files,
        probe.busy_threads,
        probe.mb_per_s,
        probe.fdatasync_p50_us,
        probe.fdatasync_p99_us,
        probe.fdatasync_max_us,
        probe.fdatasyncs_over_2500us,
        probe.fdatasyncs_over_2500us as f64 / probe.seconds,
    );
    Ok(true)
}

fn sweep(target: &Target, base: &WorkloadArgs, output: &Output) -> Result<bool, Failure> {
    let mut results = Vec::new();
    for batch in &base.batch_bytes {
        for codec in &base.compression {
            for ack in &base.acks {
                let mut args = base.clone();
                args.batch_bytes = vec![batch.clone()];
                args.compression = vec![codec.clone()];
                args.acks = vec![ack.clone()];
                let workload = args.workload()?;
                let name = format!("batch {batch} {codec} acks={ack}");
                let result = run_one(target, workload, &name, output.quiet)?;
                println!("{}", result.summary());
                results.push((name, result));
            }
        }
    }
    Ok(finish_sweep(&results, output)?)
}

fn compare(
    targets: &[String],
    notes: &[String],
    disk_probe_dir: Option<&Path>,
    freeze_others: bool,
    base: &WorkloadArgs,
    output: &Output,
) -> Result<bool, Failure> {
    let mut parsed = Vec::new();
    for spec in targets {
        let (name, address) = spec
            .split_once('=')
            .ok_or_else(|| format!("--target {spec}: expected name=host:port[@pid]"))?;
        let (address, pid) = match address.split_once('@') {
            Some((address, pid)) => (
                address,
                Some(
                    pid.parse::<u32>()
                        .map_err(|_| format!("--target {spec}: '{pid}' is not a pid"))?,
                ),
            ),
            None => (address, None),
        };
        let target = Target {
            bootstrap: (address != "embedded").then(|| address.to_string()),
            broker_pid: pid,
            data_dir: None,
            broker_cores: None,
            no_fsync: false,
            broker_preallocation: None,
            broker_tail_cache_bytes: None,
            broker_segment_bytes: None,
            broker_retention_bytes: None,
            broker_retention_check_ms: None,
            disk_probe: false,
        };
        parsed.push((name, target));
    }
    let pids_except = |skip: Option<usize>| -> Vec<u32> {
        if !freeze_others {
            return Vec::new();
        }
        parsed
            .iter()
            .enumerate()
            .filter(|(at, _)| Some(*at) != skip)
            .filter_map(|(_, (_, target))| target.broker_pid)
            .collect()
    };
    let mut results = Vec::new();
    for (at, (name, target)) in parsed.iter().enumerate() {
        let _frozen = Frozen::stop(pids_except(Some(at)))?;
        let result = run_one(target, base.workload()?, name, output.quiet)?;
        println!("{}", result.summary());
        results.push((name.to_string(), result));
    }
    let mut disk = Vec::new();
    if let Some(dir) = disk_probe_dir {
        let _frozen = Frozen::stop(pids_except(None))?;
        for write_bytes in [4096, 256 * 1024] {
            let ceiling = loadgen::disk::measure(dir, write_bytes, loadgen::disk::Space::Written)
                .map_err(|error| {
                Failure::Run(format!("disk probe in {}: {error}", dir.display()))
            })?;
            disk.push(ceiling);
        }
    }
    Ok(finish_compare(&results, notes, &disk, output)?)
}

/// Processes stopped with SIGSTOP until this is dropped (SIGCONT), also on an error.
struct Frozen(Vec<u32>);

impl Frozen {
    fn stop(pids: Vec<u32>) -> Result<Frozen, Failure> {
        let mut frozen = Frozen(Vec::new());
        for pid in pids {
            // SAFETY: kill(2) with a pid and a signal number has no memory effects.
            if unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) } != 0 {
                return Err(Failure::Run(format!(
                    "cannot stop broker process {pid} while another is measured: {}",
                    std::io::Error::last_os_error()
                )));
            }
            frozen.0.push(pid);
        }
        Ok(frozen)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for pid in &self.0 {
            // SAFETY: as in `stop`.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGCONT) };
        }
    }
}

/// A comparison's result: JSON (notes, disk, every run), the table with ratios as
/// Markdown, the chart as SVG.
fn finish_compare(
    results: &[(String, RunResult)],
    notes: &[String],
    disk: &[loadgen::disk::DiskCeiling],
    output: &Output,
) -> Result<bool, String> {
    let stem = file_stem(output, format!("compare-{}", timestamp()))?;
    let rows: Vec<(String, &RunResult)> = results.iter().map(|(n, r)| (n.clone(), r)).collect();
    let label = results
        .first()
        .map(|(_, r)| r.workload.label())
        .unwrap_or_default();
    let mut md = format!("# loadgen compare\n\n{label}\n\n");
    for note in notes {
        md.push_str(&format!("- {note}\n"));
    }
    for ceiling in disk {
        md.push_str(&format!(
            "- disk, measured after the runs in the brokers' directory: {} KiB O_DIRECT writes + fdatasync each: {:.1} MB/s durable, fdatasync p50 {} us, p99 {} us\n",
            ceiling.write_bytes / 1024,
            ceiling.mb_per_s,
            ceiling.fdatasync_p50_us,
            ceiling.fdatasync_p99_us
        ));
    }
    let table = report::compare_table(&rows);
    md.push_str(&format!("\n{table}"));
    if let Some((first, _)) = results.first().filter(|_| results.len() > 1) {
        md.push_str(&format!(
            "\nA {first}/... row is {first}'s figure divided by the other's: above 1 means more msg/s or records per CPU second, or more latency, CPU or memory.\n"
        ));
    }
    for (name, result) in results {
        md.push_str(&format!("\n{name}: {}\n", result.verdict));
    }
    let json = stem.with_extension("json");
    let svg = stem.with_extension("svg");
    let md_path = stem.with_extension("md");
    let runs: Vec<serde_json::Value> = results
        .iter()
        .map(|(name, r)| serde_json::json!({ "name": name, "run": r }))
        .collect();
    write_json(
        &json,
        &serde_json::json!({ "label": label, "notes": notes, "disk": disk, "runs": runs }),
    )?;
    report::runs_svg(&format!("loadgen compare: {label}"), &rows, &svg)?;
    std::fs::write(&md_path, md)
        .map_err(|error| format!("cannot write {}: {error}", md_path.display()))?;
    println!("{table}");
    println!(
        "wrote {}, {} and {}",
        json.display(),
        svg.display(),
        md_path.display()
    );
    Ok(results.iter().all(|(_, r)| r.pass))
}

fn finish_sweep(results: &[(String, RunResult)], output: &Output) -> Result<bool, String> {
    let title = "loadgen sweep";
    let stem = file_stem(output, format!("sweep-{}", timestamp()))?;
    let rows: Vec<(String, &RunResult)> = results.iter().map(|(n, r)| (n.clone(), r)).collect();
    let table = report::table(&rows);
    let json = stem.with_extension("json");
    let svg = stem.with_extension("svg");
    let md = stem.with_extension("md");
    let runs: Vec<&RunResult> = results.iter().map(|(_, r)| r).collect();
    write_json(&json, &runs)?;
    let label = results
        .first()
        .map(|(_, r)| {
            format!(
                "{}; each run's batch size, compression and acks as named",
                r.workload.label_without_swept()
            )
        })
        .unwrap_or_default();
    report::runs_svg(&format!("{title}: {label}"), &rows, &svg)?;
    std::fs::write(&md, format!("# {title}\n\n{label}\n\n{table}"))
        .map_err(|error| format!("cannot write {}: {error}", md.display()))?;
    println!("{table}");
    println!(
        "wrote {}, {} and {}",
        json.display(),
        svg.display(),
        md.display()
    );
    Ok(results.iter().all(|(_, r)| r.pass))
}
