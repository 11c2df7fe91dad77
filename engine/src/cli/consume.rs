//! `ringlog consume`: fetch records and print one per line.

use std::collections::BTreeMap;
use std::io::Write;

use bytes::Bytes;
use clap::Args;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::records::RecordBatchDecoder;
use protocol::record_batch::BatchHeader;

use super::route::{self, Brokers};
use super::topic::topic_name;
use super::{check, client_error};

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Partitions to read (default: all); repeat for more.
    #[arg(short, long = "partition")]
    pub partitions: Vec<i32>,
    /// Start at the earliest offset (default: the latest, only new records).
    #[arg(long)]
    pub from_beginning: bool,
    /// Start at this offset in every partition read.
    #[arg(short, long)]
    pub offset: Option<i64>,
    /// Start at the first record at or after this time (ms since the epoch).
    #[arg(long)]
    pub from_timestamp: Option<i64>,
    /// Stop after this many records.
    #[arg(short, long)]
    pub num: Option<usize>,
    /// Stop once every partition is read up to its end.
    #[arg(short, long)]
    pub exit_at_end: bool,
    /// Output format: json, or a pattern with %t topic, %p partition, %o offset, %T timestamp,
    /// %k key, %s value, %h headers (kcat style).
    #[arg(short, long, default_value = "json")]
    pub format: String,
}

pub async fn run(brokers: &str, args: ConsumeArgs) -> Result<(), String> {
    let mut brokers = Brokers::connect(brokers).await?;
    let topic = brokers
        .topic(&args.topic, &format!("cannot consume '{}'", args.topic))
        .await?;
    let all: Vec<i32> = topic
        .partitions
        .iter()
        .map(|partition| partition.partition_index)
        .collect();
    let partitions = if args.partitions.is_empty() {
        all.clone()
    } else {
        args.partitions.clone()
    };
    if let Some(missing) = partitions.iter().find(|partition| !all.contains(partition)) {
        return Err(format!(
            "partition {missing} does not exist in '{}'",
            args.topic
        ));
    }
    let mut positions: BTreeMap<i32, i64> = match (args.offset, args.from_timestamp) {
        (Some(offset), _) => partitions
            .iter()
            .map(|partition| (*partition, offset))
            .collect(),
        (None, Some(timestamp)) => brokers
            .offsets(&args.topic, &partitions, timestamp)
            .await?
            .into_iter()
            .collect(),
        (None, None) => {
            let start = if args.from_beginning { -2 } else { -1 };
            brokers
                .offsets(&args.topic, &partitions, start)
                .await?
                .into_iter()
                .collect()
        }
    };
    let ends: BTreeMap<i32, i64> = brokers
        .offsets(&args.topic, &partitions, -1)
        .await?
        .into_iter()
        .collect();
    let mut printed = 0usize;
    let mut leaders = brokers.leaders(&args.topic, &partitions).await?;
    loop {
        if args.exit_at_end
            && positions
                .iter()
                .all(|(partition, offset)| *offset < 0 || *offset >= ends[partition])
        {
            return Ok(());
        }
        // One fetch per leader in turn, each waiting a share of half a second.
        let max_wait_ms = (500 / leaders.len().max(1) as i32).max(100);
        let mut moved = false;
        for (leader, owned) in &leaders {
            let wanted: Vec<FetchPartition> = owned
                .iter()
                .filter_map(|partition| Some((*partition, *positions.get(partition)?)))
                .filter(|(_, offset)| *offset >= 0)
                .map(|(partition, offset)| {
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1024 * 1024)
                })
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let request = FetchRequest::default()
                .with_replica_id((-1).into())
                .with_max_wait_ms(max_wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(16 * 1024 * 1024)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(&args.topic))
                    .with_partitions(wanted)]);
            let answer = match brokers.to(*leader).await {
                Ok(client) => client.send(&request).await,
                Err(error) => {
                    tracing::debug!("{error}; asking for the leaders again");
                    moved = true;
                    continue;
                }
            };
            let response = match answer {
                Ok(response) => response,
                Err(error) if route::moved(&error) => {
                    tracing::debug!("broker {leader}: {error}; asking for the leaders again");
                    brokers.drop_connection(*leader);
                    moved = true;
                    continue;
                }
                Err(error) => return Err(client_error(error)),
            };
            check(response.error_code, "fetch failed", None)?;
            for fetched_topic in response.responses {
                for data in fetched_topic.partitions {
                    let partition = data.partition_index;
                    if route::is_moved(data.error_code) {
                        moved = true;
                        continue;
                    }
                    check(
                        data.error_code,
                        &format!("cannot fetch {}-{partition}", args.topic),
                        None,
                    )?;
                    let position = positions
                        .get_mut(&partition)
                        .ok_or("the broker answered for a partition not asked for")?;
                    let records = data.records.unwrap_or_default();
                    if print_records(&args, partition, &records, position, &mut printed)? {
                        return Ok(());
                    }
                }
            }
        }
        if moved {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            leaders = brokers.leaders(&args.topic, &partitions).await?;
        }
    }
}

/// Prints the records of `records` at or after `position` and moves it past them; true
/// once `--num` records are printed.
fn print_records(
    args: &ConsumeArgs,
    partition: i32,
    records: &Bytes,
    position: &mut i64,
    printed: &mut usize,
) -> Result<bool, String> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for batch in whole_batches(records) {
        let header = BatchHeader::parse(&batch).map_err(|error| error.to_string())?;
        let next = header.last_offset() + 1;
        if header.is_control() {
            *position = (*position).max(next);
            continue;
        }
        let mut buf = batch.clone();
        let set = RecordBatchDecoder::decode(&mut buf)
            .map_err(|error| format!("cannot decode a batch: {error}"))?;
        for record in set
            .records
            .iter()
            .filter(|record| record.offset >= *position)
        {
            writeln!(out, "{}", render(args, partition, record))
                .map_err(|error| error.to_string())?;
            *printed += 1;
            if args.num.is_some_and(|num| *printed >= num) {
                return Ok(true);
            }
        }
        *position = (*position).max(next);
    }
    Ok(false)
}

/// Whole batches in fetched records; a partial batch at the end is left out.
fn whole_batches(records: &Bytes) -> Vec<Bytes> {
    let mut batches = Vec::new();
    let mut at = 0;
    while let Ok(header) = BatchHeader::parse(&records[at..]) {
        let end = at + header.total_bytes();
        if end > records.len() {
            break;
        }
        batches.push(records.slice(at..end));
        at = end;
    }
    batches
}

fn text(bytes: &Option<Bytes>) -> String {
    bytes
        .as_ref()
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_default()
}

fn render(args: &ConsumeArgs, partition: i32, record: &kafka_protocol::records::Record) -> String {
    let headers: Vec<(String, String)> = record
        .headers
        .iter()
        .map(|(name, value)| (name.to_string(), text(value)))
        .collect();
    if args.format == "json" {
        let headers: serde_json::Map<String, serde_json::Value> = headers
            .into_iter()
            .map(|(name, value)| (name, serde_json::Value::String(value)))
            .collect();
        return serde_json::json!({
            "topic": args.topic,
            "partition": partition,
            "offset": record.offset,
            "timestamp": record.timestamp,
            "key": record.key.as_ref().map(|key| String::from_utf8_lossy(key).into_owned()),
            "value": record.value.as_ref().map(|value| String::from_utf8_lossy(value).into_owned()),
            "headers": headers,
        })
        .to_string();
    }
    let mut out = String::new();
    let mut chars = args.format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push_str(&args.topic),
            Some('p') => out.push_str(&partition.to_string()),
            Some('o') => out.push_str(&record.offset.to_string()),
            Some('T') => out.push_str(&record.timestamp.to_string()),
            Some('k') => out.push_str(&text(&record.key)),
            Some('s') => out.push_str(&text(&record.value)),
            Some('h') => out.push_str(
                &headers
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}
