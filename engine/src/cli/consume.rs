//! `ringlog consume`: fetch records and print one per line.

use std::collections::BTreeMap;
use std::io::Write;

use bytes::Bytes;
use clap::Args;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::records::RecordBatchDecoder;
use protocol::record_batch::BatchHeader;

use super::topic::{metadata, offsets, topic_name};
use super::{check, client_error, connect};

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
    let mut client = connect(brokers).await?;
    let response = metadata(&mut client, Some(&args.topic)).await?;
    let topic = response
        .topics
        .first()
        .ok_or("the broker returned no topic")?;
    check(
        topic.error_code,
        &format!("cannot consume '{}'", args.topic),
        None,
    )?;
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
        (None, Some(timestamp)) => offsets(&mut client, &args.topic, &partitions, timestamp)
            .await?
            .into_iter()
            .collect(),
        (None, None) => {
            let start = if args.from_beginning { -2 } else { -1 };
            offsets(&mut client, &args.topic, &partitions, start)
                .await?
                .into_iter()
                .collect()
        }
    };
    let ends: BTreeMap<i32, i64> = offsets(&mut client, &args.topic, &partitions, -1)
        .await?
        .into_iter()
        .collect();
    let mut printed = 0usize;
    let stdout = std::io::stdout();
    loop {
        if args.exit_at_end
            && positions
                .iter()
                .all(|(partition, offset)| *offset < 0 || *offset >= ends[partition])
        {
            return Ok(());
        }
        let request = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(16 * 1024 * 1024)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(&args.topic))
                .with_partitions(
                    positions
                        .iter()
                        .filter(|(_, offset)| **offset >= 0)
                        .map(|(partition, offset)| {
                            FetchPartition::default()
                                .with_partition(*partition)
                                .with_fetch_offset(*offset)
                                .with_partition_max_bytes(1024 * 1024)
                        })
                        .collect(),
                )]);
        let response = client.send(&request).await.map_err(client_error)?;
        check(response.error_code, "fetch failed", None)?;
        for fetched_topic in response.responses {
            for data in fetched_topic.partitions {
                let partition = data.partition_index;
                check(
                    data.error_code,
                    &format!("cannot fetch {}-{partition}", args.topic),
                    None,
                )?;
                let records = data.records.unwrap_or_default();
                let position = positions
                    .get_mut(&partition)
                    .ok_or("the broker answered for a partition not asked for")?;
                let mut out = stdout.lock();
                for batch in whole_batches(&records) {
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
                        writeln!(out, "{}", render(&args, partition, record))
                            .map_err(|error| error.to_string())?;
                        printed += 1;
                        if args.num.is_some_and(|num| printed >= num) {
                            return Ok(());
                        }
                    }
                    *position = (*position).max(next);
                }
            }
        }
    }
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
