//! A run's result: what it measured, on what, and whether it met the target. Written as
//! JSON next to an SVG report.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::workload::Workload;

/// The quantiles every result reports (and the percentile curve plots).
pub const QUANTILES: &[f64] = &[
    0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999, 1.0,
];

/// 1234567.8 as "1,234,568".
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (at, digit) in digits.chars().enumerate() {
        if at > 0 && (digits.len() - at) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct Second {
    /// Seconds since the schedule started.
    pub t: f64,
    pub produced_per_s: f64,
    pub produced_mb_per_s: f64,
    pub consumed_per_s: f64,
    pub produce_p50_ms: f64,
    pub produce_p99_ms: f64,
    /// p99 of the request's write to its acknowledgement (see `RunResult::request_latency`).
    pub request_p99_ms: f64,
    /// Most a batch waited before its request was written (see `RunResult::batch_wait`).
    pub batch_wait_max_ms: f64,
    /// The most a producer woke up late in this second (its timer's deadline to running
    /// again): the load generator's own stalls.
    pub producer_late_max_ms: f64,
    pub end_to_end_p99_ms: f64,
    /// Acknowledged but not yet consumed.
    pub lag: u64,
    /// Scheduled (sent, at max rate) but not yet acknowledged.
    pub backlog: u64,
    /// The embedded broker's fdatasyncs in this second (None for a broker elsewhere):
    /// their count, mean, and how many took longer than 2.5 ms, which tells a slow disk
    /// from a slow broker when a second's p99 jumps.
    pub fdatasyncs: Option<u64>,
    pub fdatasync_mean_us: Option<f64>,
    pub fdatasyncs_over_2500us: Option<u64>,
    /// ... and longer than 10 ms: a stall that alone explains a second's p99 jump.
    pub fdatasyncs_over_10ms: Option<u64>,
    /// The embedded broker's data writes, and whole durability rounds, over 10 ms in this
    /// second: a round can stall without a slow fdatasync.
    pub writes_over_10ms: Option<u64>,
    pub rounds_over_10ms: Option<u64>,
    /// The data writes made with O_DSYNC in this second (a write and its fdatasync in
    /// one), and how many took longer than 2.5 ms and 10 ms.
    pub synced_writes: Option<u64>,
    pub synced_writes_over_2500us: Option<u64>,
    pub synced_writes_over_10ms: Option<u64>,
}

fn ms(value: f64) -> String {
    if value.is_nan() {
        "-".into()
    } else {
        format!("{value:.2}")
    }
}

impl Second {
    /// The live line, like Kafka's perf-test tools print.
    pub fn line(&self, warming_up: bool) -> String {
        format!(
            "{:>5.0}s {:>11.0} rec/s acked {:>8.1} MB/s  produce p50 {:>7} ms p99 {:>7} ms (request {:>7}, batching max {:>7}, producer late {:>6})  e2e p99 {:>7} ms  consumed {:>11.0} rec/s  backlog {:>9}  lag {:>9}{}{}",
            self.t,
            self.produced_per_s,
            self.produced_mb_per_s,
            ms(self.produce_p50_ms),
            ms(self.produce_p99_ms),
            ms(self.request_p99_ms),
            ms(self.batch_wait_max_ms),
            ms(self.producer_late_max_ms),
            ms(self.end_to_end_p99_ms),
            self.consumed_per_s,
            self.backlog,
            self.lag,
            match (
                self.fdatasync_mean_us,
                self.fdatasyncs_over_2500us,
                self.fdatasyncs_over_10ms,
                self.synced_writes_over_2500us,
                self.synced_writes_over_10ms,
                self.rounds_over_10ms,
            ) {
                (Some(mean), Some(slow), Some(stalled), Some(slow_w), Some(stalled_w), Some(rounds)) => format!(
                    "  fdatasync {mean:>5.0} us ({slow} > 2.5 ms, {stalled} > 10 ms), O_DSYNC writes {slow_w} > 2.5 ms, {stalled_w} > 10 ms; rounds > 10 ms {rounds}"
                ),
                _ => String::new(),
            },
            if warming_up { "  (warm-up)" } else { "" }
        )
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Throughput {
    /// Records acknowledged (producers) or received (consumers) while the measured window
    /// ran, by the time they were acknowledged or received.
    pub records: u64,
    /// `records` per second of the window: what was achieved.
    pub records_per_s: f64,
    /// Payload: records x message bytes, per second.
    pub mb_per_s: f64,
    /// Producers only: records per batch sent.
    pub records_per_batch: f64,
    /// Producers on a fixed-rate schedule: records per second whose intended send time fell
    /// in the window (none in a max-rate run, whose load follows the acknowledgements).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_per_s: Option<f64>,
    /// Producers: records scheduled before the window ended and not acknowledged by then.
    pub backlog_at_end: u64,
    /// Producers: bytes of Produce requests written during the window (compressed records,
    /// headers and framing), per second.
    pub wire_mb_per_s: f64,
    /// Producers: records acknowledged after the window ended, and how long that took.
    pub drained_records: u64,
    pub drain_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub p9999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// (quantile, ms) at [`QUANTILES`].
    pub curve: Vec<(f64, f64)>,
    /// The whole histogram: (microseconds, count) of every recorded bucket.
    pub histogram_us: Vec<(u64, u64)>,
}

impl Latencies {
    pub fn from(histogram: &Histogram<u64>) -> Latencies {
        let at = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        Latencies {
            count: histogram.len(),
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            p9999_ms: at(0.9999),
            max_ms: histogram.max() as f64 / 1000.0,
            mean_ms: histogram.mean() / 1000.0,
            curve: QUANTILES.iter().map(|q| (*q, at(*q))).collect(),
            histogram_us: histogram
                .iter_recorded()
                .map(|bucket| (bucket.value_iterated_to(), bucket.count_at_value()))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Cpu {
    /// Wall seconds the CPU figures cover (the measured window).
    pub window_s: f64,
    pub broker_s: Option<f64>,
    pub loadgen_s: Option<f64>,
    /// Acknowledged records per broker CPU second: the figure that survives a change of
    /// machine.
    pub records_per_broker_cpu_s: Option<f64>,
    /// A local broker process's resident memory when the window ended (VmRSS), and the
    /// most it ever held (VmHWM), in bytes; none for an embedded or remote broker.
    pub broker_rss_bytes: Option<u64>,
    pub broker_peak_rss_bytes: Option<u64>,
}

/// What the embedded broker's storage did in the measured window (from its own counters),
/// and how that compares with the disk's durable ceiling measured after the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BrokerStorage {
    pub window_s: f64,
    /// Flusher rounds that wrote or synced something, per second.
    pub durability_rounds_per_s: f64,
    pub fdatasyncs_per_s: f64,
    pub fdatasync_mean_us: f64,
    pub writes_per_s: f64,
    /// Of `writes_per_s`, those made with O_DSYNC (the write and its fdatasync in one
    /// operation, for rounds a producer waits on), and their mean latency.
    pub synced_writes_per_s: f64,
    pub synced_write_mean_us: f64,
    /// Mean bytes of one data write (padding included).
    pub write_bytes_mean: f64,
    pub write_mb_per_s: f64,
    /// Reads of records served from the partitions' tail caches, per second.
    pub cache_reads_per_s: f64,
    /// Reads of records that went to the segment files (consumers behind the tail cache),
    /// per second, and their MB/s.
    pub disk_reads_per_s: f64,
    pub disk_read_mb_per_s: f64,
    /// Segments the broker's logs rolled to in the window, and of those, the ones whose
    /// file was a segment recycled by retention (appends into blocks written before).
    pub segments_rolled: u64,
    pub segments_recycled: u64,
    /// `--disk-probe`: the disk's own durable ceiling at the broker's mean write size.
    pub disk_ceiling: Option<crate::disk::DiskCeiling>,
    /// `write_mb_per_s` over the ceiling's MB/s.
    pub share_of_ceiling: Option<f64>,
    /// `--disk-probe`: the same into fallocated blocks never written before, as a new
    /// segment's are, and `write_mb_per_s` over it.
    pub disk_ceiling_fallocated: Option<crate::disk::DiskCeiling>,
    pub share_of_fallocated_ceiling: Option<f64>,
}

impl BrokerStorage {
    /// The counters' change over a window of `window_s` seconds.
    pub fn between(
        from: engine::storage::stats::StorageTotals,
        until: engine::storage::stats::StorageTotals,
        window_s: f64,
    ) -> BrokerStorage {
        let d = until.since(&from);
        let per_s = |count: u64| count as f64 / window_s.max(1e-9);
        let mean = |sum: u64, count: u64| sum as f64 / count.max(1) as f64;
        BrokerStorage {
            window_s,
            durability_rounds_per_s: per_s(d.rounds),
            fdatasyncs_per_s: per_s(d.fsyncs),
            fdatasync_mean_us: d.fsync_mean_us(),
            writes_per_s: per_s(d.writes),
            synced_writes_per_s: per_s(d.synced_writes),
            synced_write_mean_us: d.synced_write_mean_us(),
            write_bytes_mean: mean(d.write_bytes, d.writes),
            write_mb_per_s: per_s(d.write_bytes) / 1e6,
            cache_reads_per_s: per_s(d.cache_reads),
            disk_reads_per_s: per_s(d.disk_reads),
            disk_read_mb_per_s: per_s(d.disk_read_bytes) / 1e6,
            segments_rolled: d.segments_rolled,
            segments_recycled: d.segments_recycled,
            disk_ceiling: None,
            share_of_ceiling: None,
            disk_ceiling_fallocated: None,
            share_of_fallocated_ceiling: None,
        }
    }

    /// The ceilings into written and (when it could be measured) into fallocated blocks.
    pub fn set_ceiling(
        &mut self,
        ceiling: crate::disk::DiskCeiling,
        fallocated: Option<crate::disk::DiskCeiling>,
    ) {
        let written = self.write_mb_per_s;
        self.share_of_ceiling = share_of(written, &ceiling);
        self.share_of_fallocated_ceiling = fallocated.as_ref().and_then(|c| share_of(written, c));
        self.disk_ceiling = Some(ceiling);
        self.disk_ceiling_fallocated = fallocated;
    }
}

/// `write_mb_per_s` over a ceiling's MB/s (none for a ceiling of nothing).
fn share_of(write_mb_per_s: f64, ceiling: &crate::disk::DiskCeiling) -> Option<f64> {
    (ceiling.mb_per_s > 0.0).then(|| write_mb_per_s / ceiling.mb_per_s)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Checks {
    /// Whether consumers read everything back (no consumers: nothing checked).
    pub checked: bool,
    /// Acknowledged records no consumer received.
    pub missing: u64,
    pub repeated: u64,
    pub out_of_order: u64,
    pub first_problem: Option<String>,
    pub errors: Vec<String>,
}

impl Checks {
    pub fn clean(&self) -> bool {
        self.missing == 0 && self.repeated == 0 && self.out_of_order == 0 && self.errors.is_empty()
    }
}

/// Where the run ran.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub git_revision: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub hostname: String,
}

impl Environment {
    pub fn here() -> Environment {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let git_revision = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split_once(':'))
            .map(|(_, model)| model.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        Environment {
            git_revision,
            kernel: read("/proc/sys/kernel/osrelease"),
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            hostname: read("/proc/sys/kernel/hostname"),
        }
    }
}

/// The broker a run drove.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BrokerInfo {
    pub name: String,
    pub address: String,
    pub embedded: bool,
    /// Settings that shape the numbers (cores, io backend, flush policy...).
    pub settings: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub started_at: String,
    pub workload: Workload,
    pub broker: BrokerInfo,
    pub environment: Environment,
    pub produced: Throughput,
    pub consumed: Throughput,
    /// Intended send time to acknowledgement (none with acks=0).
    pub produce_latency: Option<Latencies>,
    /// The request's write to its acknowledgement, per record: `produce_latency` without
    /// the producer's batching (linger) and queueing (none with acks=0).
    pub request_latency: Option<Latencies>,
    /// Each batch's oldest record, from its intended time to its request's write (one
    /// count per batch): the linger plus anything the producer side added.
    pub batch_wait: Option<Latencies>,
    /// Intended send time to consumer receipt.
    pub end_to_end_latency: Option<Latencies>,
    pub cpu: Cpu,
    /// Embedded broker only.
    pub storage: Option<BrokerStorage>,
    pub checks: Checks,
    pub pass: bool,
    pub verdict: String,
    pub series: Vec<Second>,
}

const MIB: f64 = 1024.0 * 1024.0;

impl RunResult {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        workload: Workload,
        produced: Throughput,
        consumed: Throughput,
        produce_latency: Option<Latencies>,
        end_to_end_latency: Option<Latencies>,
        cpu: Cpu,
        checks: Checks,
        series: Vec<Second>,
    ) -> RunResult {
        let mut result = RunResult {
            started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            workload,
            broker: BrokerInfo::default(),
            environment: Environment::here(),
            produced,
            consumed,
            produce_latency,
            request_latency: None,
            batch_wait: None,
            end_to_end_latency,
            cpu,
            storage: None,
            checks,
            pass: false,
            verdict: String::new(),
            series,
        };
        let (pass, verdict) = result.judge();
        result.pass = pass;
        result.verdict = verdict;
        result
    }

    /// PASS: nothing lost, repeated or reordered, no errors, the target rate reached (within
    /// 1%), produce p99 within the bound.
    fn judge(&self) -> (bool, String) {
        if !self.checks.clean() {
            let why = self
                .checks
                .errors
                .first()
                .cloned()
                .or_else(|| self.checks.first_problem.clone())
                .unwrap_or_default();
            return (
                false,
                format!(
                    "FAIL: {} missing, {} repeated, {} out of order, {} errors; {why}",
                    self.checks.missing,
                    self.checks.repeated,
                    self.checks.out_of_order,
                    self.checks.errors.len()
                ),
            );
        }
        if let Some(offered) = self.produced.offered_per_s {
            if self.produced.records_per_s < offered * 0.99 {
                return (
                    false,
                    format!(
                        "FAIL: offered {} msg/s, achieved {} msg/s",
                        thousands(offered),
                        thousands(self.produced.records_per_s)
                    ),
                );
            }
        }
        let target = self.workload.target_rate as f64;
        let rate_ok = self.produced.records_per_s >= target * 0.99;
        let p99 = self.produce_latency.as_ref().map(|l| l.p99_ms);
        let p99_ok = p99.is_none_or(|p99| p99 <= self.workload.p99_target_ms);
        let p99_text = p99.map_or("n/a (acks=0)".to_string(), |p| format!("{p:.2} ms"));
        let line = format!(
            "{:.0} msg/s against {:.0}, produce p99 {p99_text} against {} ms",
            self.produced.records_per_s, target, self.workload.p99_target_ms
        );
        if rate_ok && p99_ok {
            (true, format!("PASS: {line}"))
        } else {
            (false, format!("FAIL: {line}"))
        }
    }

    /// The final summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let w = &self.workload;
        out.push_str(&format!("workload   {}\n", w.label()));
        out.push_str(&format!(
            "broker     {} at {}{}\n",
            self.broker.name,
            self.broker.address,
            if self.broker.embedded {
                " (embedded)"
            } else {
                ""
            }
        ));
        let offered = self
            .produced
            .offered_per_s
            .map_or("max rate (closed loop)".to_string(), |offered| {
                format!("offered {} rec/s", thousands(offered))
            });
        out.push_str(&format!(
            "produced   {:.0} rec/s acknowledged ({offered}), {:.1} MB/s payload, {:.1} MB/s on the wire over {:.0} s ({} records, {:.0} per batch); backlog at the end {}\n",
            self.produced.records_per_s,
            self.produced.mb_per_s,
            self.produced.wire_mb_per_s,
            w.duration.as_secs_f64(),
            self.produced.records,
            self.produced.records_per_batch,
            self.produced.backlog_at_end
        ));
        out.push_str(&format!(
            "drain      {} records acknowledged after the window, in {:.3} s\n",
            self.produced.drained_records, self.produced.drain_s
        ));
        out.push_str(&format!(
            "consumed   {:.0} rec/s, {:.1} MB/s\n",
            self.consumed.records_per_s, self.consumed.mb_per_s
        ));
        let latency = |name: &str, l: &Option<Latencies>| match l {
            Some(l) => format!(
                "{name} p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  p99.99 {:.2}  max {:.2} ms\n",
                l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.p9999_ms, l.max_ms
            ),
            None => format!("{name} n/a\n"),
        };
        out.push_str(&latency("produce   ", &self.produce_latency));
        if self.request_latency.is_some() {
            out.push_str(&latency(" request  ", &self.request_latency));
        }
        if self.batch_wait.is_some() {
            out.push_str(&latency(" batching ", &self.batch_wait));
        }
        out.push_str(&latency("end-to-end", &self.end_to_end_latency));
        match (self.cpu.broker_s, self.cpu.records_per_broker_cpu_s) {
            (Some(broker), Some(per_cpu)) => out.push_str(&format!(
                "cpu        broker {:.1} s, loadgen {:.1} s over {:.0} s; {:.0} records per broker CPU second\n",
                broker,
                self.cpu.loadgen_s.unwrap_or(f64::NAN),
                self.cpu.window_s,
                per_cpu
            )),
            _ => out.push_str(&format!(
                "cpu        loadgen {:.1} s; broker not local (give --broker-pid)\n",
                self.cpu.loadgen_s.unwrap_or(f64::NAN)
            )),
        }
        if let (Some(rss), Some(peak)) = (self.cpu.broker_rss_bytes, self.cpu.broker_peak_rss_bytes)
        {
            out.push_str(&format!(
                "memory     broker resident {:.0} MiB at the window's end, peak {:.0} MiB\n",
                rss as f64 / MIB,
                peak as f64 / MIB
            ));
        }
        if let Some(storage) = &self.storage {
            out.push_str(&format!(
                "storage    {:.0} durability rounds/s, {:.0} fdatasyncs/s (mean {:.0} us), {:.0} writes/s ({:.0}/s with O_DSYNC, mean {:.0} us) of {:.1} KiB, {:.1} MB/s written\n",
                storage.durability_rounds_per_s,
                storage.fdatasyncs_per_s,
                storage.fdatasync_mean_us,
                storage.writes_per_s,
                storage.synced_writes_per_s,
                storage.synced_write_mean_us,
                storage.write_bytes_mean / 1024.0,
                storage.write_mb_per_s
            ));
            out.push_str(&format!(
                "reads      {:.0} reads/s from the tail cache, {:.0} reads/s from disk ({:.1} MB/s)\n",
                storage.cache_reads_per_s, storage.disk_reads_per_s, storage.disk_read_mb_per_s
            ));
            out.push_str(&format!(
                "segments   {} rolled to in the window, {} of them recycled files (blocks written before)\n",
                storage.segments_rolled, storage.segments_recycled
            ));
            if let (Some(ceiling), Some(share)) = (&storage.disk_ceiling, storage.share_of_ceiling)
            {
                out.push_str(&format!(
                    "disk       ceiling {:.1} MB/s ({} KiB O_DIRECT writes + fdatasync each, into blocks written before, fdatasync p50 {} us p99 {} us); the broker wrote {:.2} of it\n",
                    ceiling.mb_per_s,
                    ceiling.write_bytes / 1024,
                    ceiling.fdatasync_p50_us,
                    ceiling.fdatasync_p99_us,
                    share
                ));
            }
            if let (Some(ceiling), Some(share)) = (
                &storage.disk_ceiling_fallocated,
                storage.share_of_fallocated_ceiling,
            ) {
                out.push_str(&format!(
                    "           into fallocated blocks never written (a new segment's): {:.1} MB/s (fdatasync p50 {} us p99 {} us); the broker wrote {:.2} of it\n",
                    ceiling.mb_per_s,
                    ceiling.fdatasync_p50_us,
                    ceiling.fdatasync_p99_us,
                    share
                ));
            }
        }
        out.push_str(&format!(
            "checks     {}\n",
            if !self.checks.checked {
                "not checked (no consumers)".to_string()
            } else if self.checks.clean() {
                "every acknowledged record consumed once, in order".to_string()
            } else {
                format!(
                    "{} missing, {} repeated, {} out of order",
                    self.checks.missing, self.checks.repeated, self.checks.out_of_order
                )
            }
        ));
        out.push_str(&self.verdict);
        out.push('\n');
        out
    }
}
