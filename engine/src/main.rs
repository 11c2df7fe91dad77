//! `ringlog`: the broker (`serve`) and an rpk / kafka-topics.sh style admin CLI.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Decoding untrusted frames can ask for huge, never-touched reservations: see
/// `protocol::alloc`.
#[global_allocator]
static ALLOCATOR: protocol::alloc::ReserveHugeAllocations = protocol::alloc::ReserveHugeAllocations;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    // openraft narrates every election at info and warn; its errors are what an operator
    // needs (our controller logs leadership and fencing itself). RINGLOG_LOG sets it all.
    let filter = tracing_subscriber::EnvFilter::try_from_env("RINGLOG_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{},openraft=error", args.log_level()))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ringlog: {error}");
            ExitCode::FAILURE
        }
    }
}
