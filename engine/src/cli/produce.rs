//! `ringlog produce`: one record per line of standard input.

use std::collections::BTreeMap;
use std::io::BufRead;

use clap::Args;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use protocol::partitioner::partition_for_key;
use protocol::record_batch::{validate_batch, Compression, RecordBatchBuilder, MAX_BATCH_BYTES};

use super::route::{self, Brokers};
use super::topic::topic_name;
use super::{check, client_error};

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Split each line into key and value at the first occurrence of this string.
    #[arg(short = 'K', long)]
    pub key_separator: Option<String>,
    /// Send every record to this partition (default: by key hash, else round-robin).
    #[arg(short, long)]
    pub partition: Option<i32>,
    /// Record header, name=value; repeat for more.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// acks: 0, 1 or -1 (all).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub acks: i16,
    /// Compress batches: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    pub compression: Compression,
    /// Records per batch.
    #[arg(long, default_value_t = 500)]
    pub batch_records: usize,
}

fn parse_compression(name: &str) -> Result<Compression, String> {
    Ok(match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => {
            return Err(format!(
                "{other} is not a codec: use none, gzip, snappy, lz4 or zstd"
            ))
        }
    })
}

pub async fn run(brokers: &str, args: ProduceArgs) -> Result<(), String> {
    let headers: Vec<(Vec<u8>, Vec<u8>)> = args
        .headers
        .iter()
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("header '{pair}' is not name=value"))?;
            Ok((name.as_bytes().to_vec(), value.as_bytes().to_vec()))
        })
        .collect::<Result<_, String>>()?;
    let mut brokers = Brokers::connect(brokers).await?;
    // Metadata with auto-creation, as a Kafka producer does.
    let request = kafka_protocol::messages::MetadataRequest::default()
        .with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(topic_name(&args.topic))),
        ]))
        .with_allow_auto_topic_creation(true);
    let response = brokers
        .bootstrap()
        .send(&request)
        .await
        .map_err(client_error)?;
    let topic = response
        .topics
        .first()
        .ok_or("the broker returned no topic")?;
    check(
        topic.error_code,
        &format!("cannot produce to '{}'", args.topic),
        None,
    )?;
    let partitions = topic.partitions.len() as i32;
    if let Some(partition) = args.partition {
        if partition < 0 || partition >= partitions {
            return Err(format!(
                "partition {partition} does not exist: '{}' has {partitions}",
                args.topic
            ));
        }
    }
    let stdin = std::io::stdin();
    let mut pending: BTreeMap<i32, RecordBatchBuilder> = BTreeMap::new();
    let mut next_partition = 0;
    let mut sent = 0usize;
    for line in stdin.lock().lines() {
        let line = line.map_err(|error| format!("cannot read standard input: {error}"))?;
        let (key, value) = match &args.key_separator {
            Some(separator) => match line.split_once(separator.as_str()) {
                Some((key, value)) => (Some(key.as_bytes().to_vec()), value.as_bytes().to_vec()),
                None => (None, line.as_bytes().to_vec()),
            },
            None => (None, line.as_bytes().to_vec()),
        };
        let partition = match (args.partition, &key) {
            (Some(partition), _) => partition,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => {
                next_partition = (next_partition + 1) % partitions;
                next_partition
            }
        };
        let now = engine::storage::Clock::system().now_ms();
        let builder = pending
            .entry(partition)
            .or_insert_with(|| RecordBatchBuilder::new(now));
        let header_refs: Vec<(&[u8], Option<&[u8]>)> = headers
            .iter()
            .map(|(name, value)| (name.as_slice(), Some(value.as_slice())))
            .collect();
        builder.push_with_headers(key.as_deref(), Some(&value), &header_refs, now);
        if builder.record_count() as usize >= args.batch_records {
            let builder = pending.remove(&partition).expect("present");
            sent += send(&mut brokers, &args, BTreeMap::from([(partition, builder)])).await?;
        }
    }
    if !pending.is_empty() {
        sent += send(&mut brokers, &args, pending).await?;
    }
    eprintln!("produced {sent} records to {}", args.topic);
    Ok(())
}

/// Sends one batch per partition, each to its partition's leader, and waits for every
/// answer; a partition whose leadership moved is sent again to its new leader.
async fn send(
    brokers: &mut Brokers,
    args: &ProduceArgs,
    batches: BTreeMap<i32, RecordBatchBuilder>,
) -> Result<usize, String> {
    if args.acks == 0 {
        return Err("acks=0 is not supported by this command: it waits for every answer".into());
    }
    let mut records = 0;
    let mut unsent: BTreeMap<i32, bytes::Bytes> = BTreeMap::new();
    for (partition, builder) in batches {
        records += builder.record_count() as usize;
        let mut batch = builder.finish();
        if args.compression != Compression::None {
            let header =
                validate_batch(&batch, MAX_BATCH_BYTES).map_err(|error| error.to_string())?;
            batch = protocol::codec::compress(&batch, &header, args.compression)
                .map_err(|error| format!("{:?} compression: {error}", args.compression))?;
        }
        unsent.insert(partition, batch.into());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !unsent.is_empty() {
        let partitions: Vec<i32> = unsent.keys().copied().collect();
        for (leader, owned) in brokers.leaders(&args.topic, &partitions).await? {
            let partition_data = owned
                .iter()
                .map(|partition| {
                    PartitionProduceData::default()
                        .with_index(*partition)
                        .with_records(Some(unsent[partition].clone()))
                })
                .collect();
            let request = ProduceRequest::default()
                .with_acks(args.acks)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic_name(&args.topic))
                    .with_partition_data(partition_data)]);
            // Not connected: nothing was sent, so it is safe to ask the next leader.
            let client = match brokers.to(leader).await {
                Ok(client) => client,
                Err(error) if std::time::Instant::now() < deadline => {
                    tracing::debug!("{error}; asking for the leaders again");
                    continue;
                }
                Err(error) => return Err(error),
            };
            let response = client.send(&request).await.map_err(client_error)?;
            for topic in &response.responses {
                for partition in &topic.partition_responses {
                    if route::is_moved(partition.error_code) && std::time::Instant::now() < deadline
                    {
                        continue;
                    }
                    check(
                        partition.error_code,
                        &format!("cannot produce to {}-{}", args.topic, partition.index),
                        partition.error_message.as_deref(),
                    )?;
                    unsent.remove(&partition.index);
                }
            }
        }
        if !unsent.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    Ok(records)
}
