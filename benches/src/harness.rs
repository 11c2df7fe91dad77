//! An in-process broker on tmpfs with one connected client, for the request-path
//! measurements (the disk is out of the picture; tmpfs where the machine has one).

use engine::io::Backend;
use engine::server::{Broker, BrokerConfig};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{CreateTopicsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use protocol::client::Client;

pub struct LocalBroker {
    pub broker: Broker,
    pub runtime: tokio::runtime::Runtime,
    pub client: Client,
    /// The broker's data directory, removed when this is dropped.
    pub dir: tempfile::TempDir,
}

impl LocalBroker {
    /// A broker with `cores` pinned shards and a topic of `partitions` partitions.
    pub fn start(cores: usize, topic: &str, partitions: i32) -> LocalBroker {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            tempfile::tempdir_in("/dev/shm")
        } else {
            tempfile::tempdir()
        }
        .expect("data dir");
        let broker = Broker::start(BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("address"),
            cores,
            pin_cores: true,
            io_backend: Backend::Uring,
            ..BrokerConfig::default()
        })
        .expect("broker starts");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let address = broker.address.to_string();
        let client = runtime.block_on(async {
            let mut client = Client::connect(&address, "bench").await.expect("connect");
            let create =
                CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                    .with_name(topic_name(topic))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)]);
            client.send(&create).await.expect("topic");
            client
        });
        LocalBroker {
            broker,
            runtime,
            client,
            dir,
        }
    }

    pub fn stop(self) {
        drop(self.client);
        self.broker.shutdown();
    }
}

pub fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// A Produce of `records` (one or more batches) to one partition.
pub fn produce_request(
    topic: &str,
    partition: i32,
    records: bytes::Bytes,
    acks: i16,
) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}
