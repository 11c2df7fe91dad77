//! Writes `results/storage.json` and `results/storage.md` from saved criterion runs.
//!
//! Usage: `storage_report <out-dir> <run-dir>...` where each run dir is a copy of
//! `target/criterion` after one `cargo bench --bench storage`. Run by
//! `scripts/bench-storage`, which also says how the numbers were made.

use std::path::PathBuf;
use std::process::ExitCode;

use loadgen::payload::BatchTemplate;
use ringlog_benches::{batch_kib, combine, json, markdown, read_run};

fn records_per_iteration(id: &str) -> Option<u64> {
    if id.starts_with("index_lookup") || id.starts_with("recovery") {
        return None;
    }
    let kib = batch_kib(id).unwrap_or(64);
    Some(BatchTemplate::for_batch_bytes(kib * 1024, 100).records_per_batch() as u64)
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_default()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out_dir, run_dirs)) = args.split_first() else {
        eprintln!("usage: storage_report <out-dir> <criterion-run-dir>...");
        return ExitCode::from(2);
    };
    let mut runs = Vec::new();
    for dir in run_dirs {
        match read_run(&PathBuf::from(dir)) {
            Ok(run) => runs.push(run),
            Err(error) => {
                eprintln!("storage_report: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    if runs.is_empty() {
        eprintln!("storage_report: no runs given");
        return ExitCode::from(2);
    }
    let measured = combine(&runs);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split(':').nth(1))
        .map(|name| name.trim().to_string())
        .unwrap_or_default();
    let context = serde_json::json!({
        "command": "scripts/bench-storage",
        "runs": runs.len(),
        "git_revision": command_output("git", &["rev-parse", "HEAD"]),
        "kernel": command_output("uname", &["-r"]),
        "cpu_model": cpu,
        "cpus": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        "filesystem": command_output("sh", &["-c", "df -T target | tail -1 | awk '{print $2}'"]),
        "date": command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
    });
    let header = format!(
        "# Storage engine benchmarks\n\nMedian of {} runs of `scripts/bench-storage` on {} ({} CPUs, kernel {}, {} filesystem), {}.\n\
         Batches of 100-byte records, one append at a time (append, wait for its ack, next).\n\
         `raw` is sequential O_DIRECT io_uring `write_at` (+ fdatasync) of the same bytes to a zero-filled file;\n\
         engine/raw is the figure of merit.\n",
        runs.len(),
        context["cpu_model"].as_str().unwrap_or("?"),
        context["cpus"],
        context["kernel"].as_str().unwrap_or("?"),
        context["filesystem"].as_str().unwrap_or("?"),
        context["date"].as_str().unwrap_or("?"),
    );
    let out_dir = PathBuf::from(out_dir);
    let report = json(&measured, &records_per_iteration, context);
    let written = std::fs::write(
        out_dir.join("storage.json"),
        serde_json::to_string_pretty(&report).expect("json"),
    )
    .and_then(|()| {
        std::fs::write(
            out_dir.join("storage.md"),
            markdown(&measured, &records_per_iteration, &header),
        )
    });
    if let Err(error) = written {
        eprintln!(
            "storage_report: cannot write results to {}: {error}",
            out_dir.display()
        );
        return ExitCode::FAILURE;
    }
    println!("{}", markdown(&measured, &records_per_iteration, &header));
    ExitCode::SUCCESS
}
