//! Benchmark reporting for ringlog.
//!
//! The criterion benchmarks live in `benches/`; this library turns their output into the
//! committed results: it reads the `new/estimates.json` + `new/benchmark.json` pairs of one
//! or more criterion runs, takes each benchmark's median time per iteration, then the
//! median across runs (the machines are shared and noisy), and renders JSON and a markdown
//! summary with the engine/raw ratios.
//!
//! ```
//! use ringlog_benches::{batch_kib, median};
//!
//! assert_eq!(median(&[310.0, 290.0, 400.0]), 310.0);
//! assert_eq!(batch_kib("append_fsync/engine/64KiB"), Some(64));
//! ```

pub mod harness;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

/// One benchmark's medians across runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Criterion's id, e.g. `append_fsync/engine/64KiB`.
    pub id: String,
    /// Median time per iteration of each run, in nanoseconds.
    pub per_run_ns: Vec<f64>,
    /// Bytes one iteration moves (from the benchmark's throughput), if any.
    pub bytes_per_iteration: Option<u64>,
}

impl Measured {
    pub fn median_ns(&self) -> f64 {
        median(&self.per_run_ns)
    }

    pub fn mb_per_s(&self) -> Option<f64> {
        self.bytes_per_iteration
            .map(|bytes| bytes as f64 / self.median_ns() * 1e9 / 1e6)
    }
}

pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "median of nothing");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Reads every benchmark under one criterion output directory.
pub fn read_run(criterion_dir: &Path) -> Result<BTreeMap<String, (f64, Option<u64>)>, String> {
    let mut found = BTreeMap::new();
    visit(criterion_dir, &mut found)?;
    Ok(found)
}

fn visit(dir: &Path, found: &mut BTreeMap<String, (f64, Option<u64>)>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| format!("cannot list {}: {error}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|error| error.to_string())?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name == "new") {
                let benchmark = read_json(&path.join("benchmark.json"))?;
                let estimates = read_json(&path.join("estimates.json"))?;
                let id = benchmark["full_id"]
                    .as_str()
                    .ok_or("benchmark.json lacks full_id")?
                    .to_string();
                let median_ns = estimates["median"]["point_estimate"]
                    .as_f64()
                    .ok_or("estimates.json lacks median.point_estimate")?;
                let bytes = benchmark["throughput"]["Bytes"].as_u64();
                found.insert(id, (median_ns, bytes));
            } else {
                visit(&path, found)?;
            }
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    serde_json::from_str(&text).map_err(|error| format!("{} is not JSON: {error}", path.display()))
}

/// Combines several runs: a benchmark missing from a run is reported from the others.
pub fn combine(runs: &[BTreeMap<String, (f64, Option<u64>)>]) -> Vec<Measured> {
    let mut combined: BTreeMap<String, Measured> = BTreeMap::new();
    for run in runs {
        for (id, (median_ns, bytes)) in run {
            let measured = combined.entry(id.clone()).or_insert_with(|| Measured {
                id: id.clone(),
                per_run_ns: Vec::new(),
                bytes_per_iteration: *bytes,
            });
            measured.per_run_ns.push(*median_ns);
        }
    }
    combined.into_values().collect()
}

/// The batch size in a benchmark id (`..._64KiB...` or `.../64KiB`), in KiB.
pub fn batch_kib(id: &str) -> Option<usize> {
    let end = id.find("KiB")?;
    let digits: String = id[..end]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

/// The markdown summary. `records_per_iteration` maps a benchmark id to its record count.
pub fn markdown(
    measured: &[Measured],
    records_per_iteration: &dyn Fn(&str) -> Option<u64>,
    header: &str,
) -> String {
    let by_id: BTreeMap<&str, &Measured> = measured.iter().map(|m| (m.id.as_str(), m)).collect();
    let mut out = String::from(header);
    for (group, title) in [
        (
            "append_fsync",
            "durable appends (write + fdatasync per batch)",
        ),
        ("append_nosync", "appends without fdatasync"),
    ] {
        out.push_str(&format!("\n### {title}\n\n| batch | raw MB/s | engine MB/s | engine records/s | engine/raw |\n|---|---|---|---|---|\n"));
        for kib in [1, 16, 64, 256] {
            let raw = by_id.get(format!("{group}/raw/{kib}KiB").as_str());
            let engine = by_id.get(format!("{group}/engine/{kib}KiB").as_str());
            if let (Some(raw), Some(engine)) = (raw, engine) {
                let records = records_per_iteration(&engine.id).unwrap_or(0) as f64;
                out.push_str(&format!(
                    "| {kib} KiB | {:.0} | {:.0} | {:.0} | {:.2} |\n",
                    raw.mb_per_s().unwrap_or(0.0),
                    engine.mb_per_s().unwrap_or(0.0),
                    records / engine.median_ns() * 1e9,
                    raw.median_ns() / engine.median_ns(),
                ));
            }
        }
    }
    out.push_str("\n### 64 KiB durable appends: the choices behind the defaults\n\n| variant | MB/s | latency per append (us) |\n|---|---|---|\n");
    for m in measured
        .iter()
        .filter(|m| m.id.starts_with("append_fsync_64k_variants/"))
    {
        let name = m.id.trim_start_matches("append_fsync_64k_variants/");
        out.push_str(&format!(
            "| {name} | {:.0} | {:.0} |\n",
            m.mb_per_s().unwrap_or(0.0),
            m.median_ns() / 1e3
        ));
    }
    out.push_str("\n### Other\n\n| benchmark | result |\n|---|---|\n");
    for m in measured {
        let line = if m.id.starts_with("group_commit/") {
            let records = records_per_iteration(&m.id).unwrap_or(0) as f64;
            Some(format!(
                "{:.0} MB/s, {:.0} records/s",
                m.mb_per_s().unwrap_or(0.0),
                records / m.median_ns() * 1e9
            ))
        } else if m.id == "index_lookup" {
            Some(format!("{:.1} ns per lookup", m.median_ns()))
        } else if m.id.starts_with("recovery_1gib/") {
            Some(format!("{:.3} s", m.median_ns() / 1e9))
        } else {
            None
        };
        if let Some(line) = line {
            out.push_str(&format!("| {} | {line} |\n", m.id));
        }
    }
    out
}

/// The JSON result.
pub fn json(
    measured: &[Measured],
    records_per_iteration: &dyn Fn(&str) -> Option<u64>,
    context: Value,
) -> Value {
    let benchmarks: Vec<Value> = measured
        .iter()
        .map(|m| {
            let records = records_per_iteration(&m.id);
            json!({
                "id": m.id,
                "median_ns_per_iteration": m.median_ns(),
                "per_run_median_ns": m.per_run_ns,
                "bytes_per_iteration": m.bytes_per_iteration,
                "records_per_iteration": records,
                "mb_per_s": m.mb_per_s(),
                "records_per_s": records.map(|r| r as f64 / m.median_ns() * 1e9),
            })
        })
        .collect();
    json!({ "context": context, "benchmarks": benchmarks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_batch_sizes() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(batch_kib("append_fsync/engine/256KiB"), Some(256));
        assert_eq!(batch_kib("group_commit/engine_1KiB_64_in_flight"), Some(1));
        assert_eq!(batch_kib("index_lookup"), None);
    }

    #[test]
    fn combine_and_render_ratios() {
        let mut run = BTreeMap::new();
        run.insert(
            "append_fsync/raw/64KiB".to_string(),
            (100_000.0, Some(65_000)),
        );
        run.insert(
            "append_fsync/engine/64KiB".to_string(),
            (125_000.0, Some(65_000)),
        );
        let mut second = run.clone();
        second.insert(
            "append_fsync/raw/64KiB".to_string(),
            (120_000.0, Some(65_000)),
        );
        let measured = combine(&[run.clone(), run, second]);
        let raw = measured
            .iter()
            .find(|m| m.id == "append_fsync/raw/64KiB")
            .unwrap();
        assert_eq!(raw.median_ns(), 100_000.0);
        assert_eq!(raw.mb_per_s(), Some(650.0));
        let text = markdown(&measured, &|_| Some(500), "");
        assert!(
            text.contains("| 64 KiB | 650 | 520 | 4000000 | 0.80 |"),
            "{text}"
        );
    }
}
