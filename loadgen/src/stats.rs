//! What a run measures while it runs: counters, latency histograms (HdrHistogram, in
//! microseconds), per-(producer, partition) sequence checks, and CPU time from /proc.
//!
//! Produce latency is taken from a record's *intended* send time (its slot in the fixed-rate
//! schedule) to its acknowledgement, so a stall is charged to every record it delayed, not
//! only to the one request that was waiting (no coordinated omission).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

/// Microseconds since the epoch, now.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A latency histogram in microseconds, 1 us to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// A histogram for the current second and one for the whole measured window.
pub struct Latency {
    pub interval: Histogram<u64>,
    pub total: Histogram<u64>,
}

impl Latency {
    fn new() -> Latency {
        Latency {
            interval: histogram(),
            total: histogram(),
        }
    }

    /// Records every value of `micros`, one count per run of values the histograms cannot
    /// tell apart: the records of a batch differ by fractions of a bucket (at 10 ms a bucket
    /// is 8 us wide), and counting them one by one was a tenth of the load generator's CPU
    /// at the maximum rate. The histograms end up exactly as if each value were recorded.
    pub fn record_all(&mut self, micros: impl IntoIterator<Item = i64>) {
        let mut run: Option<(u64, u64, u64)> = None; // (lowest, highest, count)
        for value in micros.into_iter().map(clamp_micros) {
            match &mut run {
                Some((lowest, highest, count)) if (*lowest..=*highest).contains(&value) => {
                    *count += 1
                }
                _ => {
                    if let Some((lowest, _, count)) = run {
                        self.record_n(lowest as i64, count);
                    }
                    run = Some((
                        self.total.lowest_equivalent(value),
                        self.total.highest_equivalent(value),
                        1,
                    ));
                }
            }
        }
        if let Some((lowest, _, count)) = run {
            self.record_n(lowest as i64, count);
        }
    }

    /// What `read` finds in the current interval's histogram (None when it is empty), and
    /// a fresh interval.
    pub fn take_interval<T>(&mut self, read: impl FnOnce(&Histogram<u64>) -> T) -> Option<T> {
        let found = (!self.interval.is_empty()).then(|| read(&self.interval));
        self.interval.reset();
        found
    }

    /// Records `micros` `count` times.
    pub fn record_n(&mut self, micros: i64, count: u64) {
        let value = clamp_micros(micros);
        let _ = self.interval.record_n(value, count);
        let _ = self.total.record_n(value, count);
    }
}

fn clamp_micros(micros: i64) -> u64 {
    (micros.max(1) as u64).min(600_000_000)
}

/// A cheap hasher for the (partition, producer) keys of the sequence table, which is
/// touched for every consumed record (SipHash showed up in profiles).
#[derive(Default)]
pub struct PairHasher(u64);

impl std::hash::Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i32(&mut self, value: i32) {
        self.0 = (self.0.rotate_left(32) ^ value as u32 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u32(&mut self, value: u32) {
        self.0 = (self.0.rotate_left(32) ^ u64::from(value)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type PairMap<V> = HashMap<(i32, u32), V, std::hash::BuildHasherDefault<PairHasher>>;

/// Sequence checks of what consumers received, per (partition, producer).
#[derive(Debug, Default)]
pub struct Sequences {
    next: PairMap<u64>,
    /// Records that came with a sequence other than the next expected one.
    pub out_of_order: u64,
    /// Records whose sequence was already seen (duplicates, or late after a gap).
    pub repeated: u64,
    pub first_problem: Option<String>,
}

impl Sequences {
    pub fn observe(&mut self, partition: i32, producer: u32, sequence: u64) {
        let next = self.next.entry((partition, producer)).or_insert(0);
        if sequence == *next {
            *next += 1;
            return;
        }
        if sequence < *next {
            self.repeated += 1;
        } else {
            self.out_of_order += 1;
            *next = sequence + 1;
        }
        if self.first_problem.is_none() {
            self.first_problem = Some(format!(
                "partition {partition}, producer {producer}: sequence {sequence} arrived when {} was expected",
                if sequence < *next { sequence.max(1) } else { *next }
            ));
        }
    }

    /// `observe` of `first`, `first + 1`, ..., `count` sequences in all: a batch's records
    /// from one producer come in runs, and a run that continues where the last one ended
    /// takes one lookup.
    pub fn observe_run(&mut self, partition: i32, producer: u32, first: u64, count: u64) {
        let next = self.next.entry((partition, producer)).or_insert(0);
        if first == *next {
            *next += count;
            return;
        }
        for sequence in first..first + count {
            self.observe(partition, producer, sequence);
        }
    }

    /// Records of each (partition, producer) received in order so far.
    pub fn received(&self, partition: i32, producer: u32) -> u64 {
        self.next.get(&(partition, producer)).copied().unwrap_or(0)
    }
}

/// Shared by every producer, consumer and the reporter of one run.
pub struct Stats {
    /// Records whose intended send time is in [measure_from_us, measure_until_us) count.
    pub measure_from_us: i64,
    pub measure_until_us: i64,
    /// Records handed to the connection, all of them.
    pub sent: AtomicU64,
    /// Records acknowledged, all of them.
    pub acked: AtomicU64,
    /// Records acknowledged while the measured window ran (by acknowledgement time; with
    /// acks=0, by send time): what throughput is.
    pub acked_in_window: AtomicU64,
    /// Records acknowledged before the window ended (any intended time).
    pub acked_by_window_end: AtomicU64,
    /// Bytes of Produce requests written while the window ran.
    pub wire_bytes_in_window: AtomicU64,
    pub consumed: AtomicU64,
    /// Records received while the measured window ran.
    pub consumed_measured: AtomicU64,
    pub produce: Mutex<Latency>,
    /// The part of `produce` from the request's write to its acknowledgement (broker and
    /// network, without the producer's batching and queueing), one count per record.
    pub request: Mutex<Latency>,
    /// Each batch's oldest record, from its intended time to its request's write: the
    /// linger, then any lateness of the producer's own and any wait for an in-flight slot.
    pub batch_wait: Mutex<Latency>,
    /// The most any producer woke up after the moment it slept until, since this was last
    /// taken (microseconds): the load generator's own lateness, which the produce latency
    /// of the records due meanwhile includes.
    pub producer_late_max_us: AtomicI64,
    pub end_to_end: Mutex<Latency>,
    pub sequences: Mutex<Sequences>,
    /// Per (partition, producer): records acknowledged (or sent, with acks=0).
    pub produced: Mutex<HashMap<(i32, u32), u64>>,
    pub errors: Mutex<Vec<String>>,
    pub failed: AtomicBool,
}

impl Stats {
    pub fn new(measure_from_us: i64, measure_until_us: i64) -> Stats {
        Stats {
            measure_from_us,
            measure_until_us,
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            acked_in_window: AtomicU64::new(0),
            acked_by_window_end: AtomicU64::new(0),
            wire_bytes_in_window: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            consumed_measured: AtomicU64::new(0),
            produce: Mutex::new(Latency::new()),
            request: Mutex::new(Latency::new()),
            batch_wait: Mutex::new(Latency::new()),
            producer_late_max_us: AtomicI64::new(0),
            end_to_end: Mutex::new(Latency::new()),
            sequences: Mutex::new(Sequences::default()),
            produced: Mutex::new(HashMap::new()),
            errors: Mutex::new(Vec::new()),
            failed: AtomicBool::new(false),
        }
    }

    pub fn measured(&self, intended_us: i64) -> bool {
        intended_us >= self.measure_from_us && intended_us < self.measure_until_us
    }

    /// Bytes of a request written at `at_us`.
    pub fn wire_bytes(&self, bytes: u64, at_us: i64) {
        if self.measured(at_us) {
            self.wire_bytes_in_window
                .fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Records an error; the run fails. Only the first 100 are kept.
    pub fn error(&self, message: String) {
        self.failed.store(true, Ordering::Relaxed);
        let mut errors = self.errors.lock().expect("errors lock");
        if errors.len() < 100 {
            errors.push(message);
        }
    }

    /// A batch of `count` records acknowledged at `ack_us`; record `i` was meant to go at
    /// `first_intended_us + i * spacing_us`.
    /// A producer woke up `late_us` after the moment it slept until.
    pub fn producer_woke(&self, late_us: i64) {
        self.producer_late_max_us
            .fetch_max(late_us, Ordering::Relaxed);
    }

    /// A request written at `sent_us` was acknowledged at `ack_us`, for `records` records
    /// of the measured window.
    pub fn request_answered(&self, sent_us: i64, ack_us: i64, records: u64) {
        if records > 0 {
            let mut latency = self.request.lock().expect("latency lock");
            latency.record_n(ack_us - sent_us, records);
        }
    }

    /// Records acknowledged (`ack_us` None: sent with acks=0); returns how many of them
    /// were intended in the measured window.
    pub fn acknowledged(
        &self,
        partition: i32,
        producer: u32,
        count: u64,
        intended_us: &[i64],
        ack_us: Option<i64>,
    ) -> u64 {
        self.acked.fetch_add(count, Ordering::Relaxed);
        *self
            .produced
            .lock()
            .expect("produced lock")
            .entry((partition, producer))
            .or_insert(0) += count;
        let measured = intended_us.iter().filter(|t| self.measured(**t)).count() as u64;
        let at = ack_us.unwrap_or_else(now_us);
        if self.measured(at) {
            self.acked_in_window.fetch_add(count, Ordering::Relaxed);
        }
        if at < self.measure_until_us {
            self.acked_by_window_end.fetch_add(count, Ordering::Relaxed);
        }
        if let Some(ack_us) = ack_us {
            if measured > 0 {
                let mut latency = self.produce.lock().expect("latency lock");
                latency.record_all(
                    intended_us
                        .iter()
                        .filter(|t| self.measured(**t))
                        .map(|intended| ack_us - intended),
                );
            }
        }
        measured
    }
}

/// CPU seconds (user + system) of a process, or of this process's threads whose name
/// starts with one of the prefixes (an embedded broker's threads).
pub fn cpu_seconds(pid: Option<u32>, thread_prefixes: Option<&[&str]>) -> Option<f64> {
    let ticks = clock_ticks();
    let proc_dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_string(),
    };
    match thread_prefixes {
        None => stat_ticks(&format!("{proc_dir}/stat")).map(|t| t as f64 / ticks),
        Some(prefixes) => {
            let mut total = 0u64;
            for entry in std::fs::read_dir(format!("{proc_dir}/task"))
                .ok()?
                .flatten()
            {
                let path = entry.path();
                let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
                if prefixes
                    .iter()
                    .any(|prefix| comm.trim_end().starts_with(prefix))
                {
                    total += stat_ticks(&path.join("stat").to_string_lossy()).unwrap_or(0);
                }
            }
            Some(total as f64 / ticks)
        }
    }
}

fn stat_ticks(path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces, inside parentheses).
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name and state.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_runs_gives_the_histograms_one_by_one_recording_gives() {
        // A batch's latencies, falling by about half a microsecond a record, across bucket
        // boundaries of several widths, with a few values out of order.
        let mut values: Vec<i64> = (0..20_000).map(|i| 30_000 - i * 3 / 2).collect();
        values.extend([5, 1, 0, -3, 4_000_000, 17, 17, 18]);
        let mut one_by_one = Latency::new();
        for value in &values {
            let value = clamp_micros(*value);
            one_by_one.interval.record(value).unwrap();
            one_by_one.total.record(value).unwrap();
        }
        let mut runs = Latency::new();
        runs.record_all(values.iter().copied());
        for (a, b) in [
            (&runs.total, &one_by_one.total),
            (&runs.interval, &one_by_one.interval),
        ] {
            assert_eq!(a, b);
            assert_eq!((a.min(), a.max(), a.len()), (b.min(), b.max(), b.len()));
            for quantile in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(a.value_at_quantile(quantile), b.value_at_quantile(quantile));
            }
        }
    }

    #[test]
    fn a_second_is_read_once_and_the_run_keeps_every_value() {
        let mut latency = Latency::new();
        latency.record_n(2_000, 3);
        latency.record_n(9_000, 1);
        assert_eq!(
            latency.take_interval(|h| (h.len(), h.max())),
            Some((4, 9_007))
        );
        assert_eq!(latency.take_interval(|h| h.len()), None);
        latency.record_n(-5, 2); // clamped to 1 us
        assert_eq!(latency.take_interval(|h| (h.len(), h.min())), Some((2, 1)));
        assert_eq!((latency.total.len(), latency.total.min()), (6, 1));
    }

    #[test]
    fn runs_of_sequences_are_checked_as_one_by_one() {
        // In order, a gap, a repeat overlapping what came before, back in order, another
        // producer and partition in between.
        let runs = [
            (0, 0, 0, 10),
            (0, 0, 10, 5),
            (1, 0, 0, 3),
            (0, 0, 20, 4),
            (0, 0, 22, 6),
            (0, 1, 0, 2),
            (0, 0, 28, 1),
            (0, 0, 3, 2),
            (0, 0, 29, 3),
        ];
        let mut one_by_one = Sequences::default();
        let mut by_runs = Sequences::default();
        for (partition, producer, first, count) in runs {
            for sequence in first..first + count {
                one_by_one.observe(partition, producer, sequence);
            }
            by_runs.observe_run(partition, producer, first, count);
        }
        assert_eq!(by_runs.out_of_order, one_by_one.out_of_order);
        assert_eq!(by_runs.repeated, one_by_one.repeated);
        assert_eq!(by_runs.first_problem, one_by_one.first_problem);
        assert_eq!((by_runs.out_of_order, by_runs.repeated), (1, 4));
        for (partition, producer) in [(0, 0), (1, 0), (0, 1)] {
            assert_eq!(
                by_runs.received(partition, producer),
                one_by_one.received(partition, producer)
            );
        }
        assert_eq!(by_runs.received(0, 0), 32);
    }

    #[test]
    fn a_stall_is_charged_to_every_record_it_delayed() {
        // 1000 records/s for one second: record i intended at i ms. The broker stalls for
        // 500 ms in the middle: the records from 200 ms on are acknowledged at 700 ms.
        let stats = Stats::new(0, i64::MAX);
        for i in 0..1000i64 {
            let intended = i * 1000;
            let ack = if (200..700).contains(&i) {
                700_000
            } else {
                intended + 1000
            };
            stats.acknowledged(0, 0, 1, &[intended], Some(ack));
        }
        let latency = stats.produce.lock().unwrap();
        // Half the records waited: the median is about 1 ms only because half did not.
        assert_eq!(latency.total.len(), 1000);
        let p90 = latency.total.value_at_quantile(0.90);
        assert!(p90 > 100_000, "p90 {p90} us must show the stall");
        let p99 = latency.total.value_at_quantile(0.99);
        assert!((480_000..=520_000).contains(&p99), "p99 {p99} us");
    }

    #[test]
    fn sequences_tell_repeats_and_gaps() {
        let mut sequences = Sequences::default();
        for s in [0, 1, 2, 2, 3, 5, 4, 6] {
            sequences.observe(0, 7, s);
        }
        assert_eq!(sequences.repeated, 2, "2 again and 4 after 5");
        assert_eq!(sequences.out_of_order, 1, "5 before 4");
        assert_eq!(sequences.received(0, 7), 7);
        assert!(sequences.first_problem.is_some());
        let mut clean = Sequences::default();
        for s in 0..100 {
            clean.observe(1, 0, s);
        }
        assert_eq!((clean.repeated, clean.out_of_order), (0, 0));
        assert!(clean.first_problem.is_none());
    }

    #[test]
    fn cpu_time_of_this_process_is_read() {
        let start = cpu_seconds(None, None).unwrap();
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds(None, None).unwrap() >= start);
    }
}
