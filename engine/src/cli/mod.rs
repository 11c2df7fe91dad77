//! Command line: `ringlog serve` runs the broker; the other commands talk to a broker with
//! the protocol crate's client, like rpk or kafka-topics.sh.

mod cluster;
mod consume;
mod group;
mod produce;
mod route;
mod serve;
mod topic;

use clap::{Parser, Subcommand};
use protocol::client::{Client, ClientError};

#[derive(Debug, Parser)]
#[command(
    name = "ringlog",
    version,
    about = "A Kafka-compatible log broker, one thread per core, io_uring storage"
)]
pub struct Args {
    /// Brokers to talk to (host:port), for every command but `serve`.
    #[arg(
        short = 'b',
        long,
        global = true,
        env = "RINGLOG_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// Log verbosity (error, warn, info, debug, trace); RINGLOG_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

impl Args {
    pub fn log_level(&self) -> String {
        self.log_level.clone()
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker.
    Serve(Box<serve::ServeArgs>),
    /// Describe the cluster: brokers, controller leader, partition leaders and replicas.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Create, list, describe, delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// List, describe, reset and delete consumer groups.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Produce lines from standard input, one record per line.
    Produce(produce::ProduceArgs),
    /// Consume records and print them, one per line.
    Consume(consume::ConsumeArgs),
}

pub fn run(args: Args) -> Result<(), String> {
    match args.command {
        Command::Serve(serve) => serve::run(*serve),
        Command::Cluster(command) => block_on(cluster::run(&args.brokers, command)),
        Command::Topic(command) => block_on(topic::run(&args.brokers, command)),
        Command::Group(command) => block_on(group::run(&args.brokers, command)),
        Command::Produce(produce) => block_on(produce::run(&args.brokers, produce)),
        Command::Consume(consume) => block_on(consume::run(&args.brokers, consume)),
    }
}

fn block_on<F: std::future::Future<Output = Result<(), String>>>(future: F) -> Result<(), String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?
        .block_on(future)
}

/// Connects to the first broker that answers.
async fn connect(brokers: &str) -> Result<Client, String> {
    let mut last = None;
    for broker in brokers
        .split(',')
        .map(str::trim)
        .filter(|broker| !broker.is_empty())
    {
        match Client::connect(broker, "ringlog-cli").await {
            Ok(client) => return Ok(client),
            Err(error) => last = Some(error),
        }
    }
    Err(match last {
        Some(error) => error.to_string(),
        None => "no broker address given (-b host:port)".into(),
    })
}

fn client_error(error: ClientError) -> String {
    error.to_string()
}

/// A Kafka error code as a one-line message, or Ok for 0.
fn check(code: i16, what: &str, message: Option<&str>) -> Result<(), String> {
    if code == 0 {
        return Ok(());
    }
    let detail = message
        .filter(|message| !message.is_empty())
        .map(|message| format!(": {message}"))
        .unwrap_or_default();
    Err(format!(
        "{what}: {}{detail}",
        protocol::error_code::describe(code)
    ))
}
