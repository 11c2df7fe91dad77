//! Three real `ringlog serve` processes forming a cluster on loopback: the controller quorum
//! elects a leader, every broker registers and is listed by each broker's Metadata (read by
//! librdkafka) and DescribeCluster (read by `ringlog cluster describe`); the controller
//! leader killed with SIGKILL is replaced, fenced once its session times out, and listed
//! again after it restarts on its data. Topics are placed across the brokers: librdkafka
//! produces to every partition's leader and reads each acknowledged record back at its
//! offset; topics are created and deleted while a broker is down, and it catches up.

mod broker;
mod members;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use broker::{free_local_addresses, scrape_metrics, BrokerProcess};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

const HEARTBEAT_MS: &str = "200";
const SESSION_TIMEOUT_MS: &str = "2000";
/// Long enough for an election (1-2 s), a session timeout and a loaded machine.
const CONVERGE: Duration = Duration::from_secs(30);

struct Node {
    id: i32,
    process: BrokerProcess,
    metrics: String,
}

fn start_cluster(extra_flags: &[&str]) -> Vec<Node> {
    // Controller and metrics addresses, all distinct: two voters on one port would each
    // take the other's messages for their own.
    let mut addresses = free_local_addresses(6);
    let metrics_addresses = addresses.split_off(3);
    let cluster_addresses = addresses;
    let voters = cluster_addresses
        .iter()
        .enumerate()
        .map(|(index, address)| format!("{}@{address}", index + 1))
        .collect::<Vec<_>>()
        .join(",");
    cluster_addresses
        .iter()
        .enumerate()
        .map(|(index, cluster_address)| {
            let id = index as i32 + 1;
            let metrics = metrics_addresses[index].clone();
            let id_text = id.to_string();
            let rack = format!("rack-{id}");
            let mut flags = vec![
                "--node-id",
                &id_text,
                "--voters",
                &voters,
                "--cluster-listen",
                cluster_address,
                "--rack",
                &rack,
                "--broker-heartbeat-interval-ms",
                HEARTBEAT_MS,
                "--broker-session-timeout-ms",
                SESSION_TIMEOUT_MS,
                "--metrics-listen",
                &metrics,
            ];
            flags.extend_from_slice(extra_flags);
            let process = BrokerProcess::start_with(1, &flags);
            Node {
                id,
                process,
                metrics,
            }
        })
        .collect()
}

/// What `ringlog cluster describe` printed: cluster id, controller, brokers (id, address,
/// rack).
#[derive(Debug, PartialEq, Eq)]
struct Described {
    cluster_id: String,
    controller: Option<i32>,
    brokers: Vec<(i32, String, String)>,
}

fn describe(node: &Node) -> Option<Described> {
    let (ok, stdout, _) = node.process.cli(&["cluster", "describe"], "");
    if !ok {
        return None;
    }
    let mut lines = stdout.lines();
    let head: Vec<&str> = lines.next()?.split_whitespace().collect();
    let cluster_id = head.get(1)?.to_string();
    let controller = head.get(3)?.parse().ok();
    let brokers = lines
        .skip(1)
        .take_while(|line| !line.starts_with("topic\t"))
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (
                fields[0].parse().expect("broker id"),
                fields[1].to_string(),
                fields[2].to_string(),
            )
        })
        .collect();
    Some(Described {
        cluster_id,
        controller,
        brokers,
    })
}

/// Waits until every node in `nodes` describes the same cluster, with a controller leader
/// among `controllers` and exactly the brokers `live`; returns that description.
fn converge(nodes: &[&Node], controllers: &BTreeSet<i32>, live: &BTreeSet<i32>) -> Described {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let seen: Vec<Option<Described>> = nodes.iter().map(|node| describe(node)).collect();
        let agreed = seen.iter().all(|described| {
            described.as_ref().is_some_and(|described| {
                Some(described) == seen[0].as_ref()
                    && described
                        .controller
                        .is_some_and(|id| controllers.contains(&id))
                    && described
                        .brokers
                        .iter()
                        .map(|b| b.0)
                        .collect::<BTreeSet<_>>()
                        == *live
            })
        });
        if agreed {
            return seen.into_iter().next().flatten().expect("agreed on one");
        }
        assert!(
            Instant::now() < deadline,
            "no agreement on controller in {controllers:?} and brokers {live:?} within {CONVERGE:?}: {seen:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn admin(node: &Node) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", &node.process.address)
        .create()
        .expect("admin client")
}

#[tokio::test(flavor = "multi_thread")]
async fn three_brokers_elect_a_controller_and_replace_a_killed_one() {
    let mut nodes = start_cluster(&[]);
    let all: BTreeSet<i32> = nodes.iter().map(|node| node.id).collect();
    let first = converge(&nodes.iter().collect::<Vec<_>>(), &all, &all);
    for node in &nodes {
        let (_, address, rack) = &first.brokers[node.id as usize - 1];
        assert_eq!(address, &node.process.address, "broker {}", node.id);
        assert_eq!(rack, &format!("rack-{}", node.id));
    }

    // A real client sees the three brokers, at the addresses they listen on, from any of
    // them, and the same cluster id.
    for node in &nodes {
        let metadata = admin(node)
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("metadata");
        let mut brokers: Vec<(i32, String)> = metadata
            .brokers()
            .iter()
            .map(|broker| (broker.id(), format!("{}:{}", broker.host(), broker.port())))
            .collect();
        brokers.sort();
        let expected: Vec<(i32, String)> = nodes
            .iter()
            .map(|node| (node.id, node.process.address.clone()))
            .collect();
        assert_eq!(brokers, expected, "as broker {} reports them", node.id);
    }

    // A topic over the three brokers; a replication factor above the brokers is refused.
    let created = admin(&nodes[0])
        .create_topics(
            &[
                NewTopic::new("orders", 6, TopicReplication::Fixed(1)),
                NewTopic::new("replicated", 3, TopicReplication::Fixed(4)),
            ],
            &AdminOptions::new(),
        )
        .await
        .expect("create topics answered");
    assert_eq!(created[0], Ok("orders".to_string()));
    assert_eq!(
        created[1],
        Err((
            "replicated".to_string(),
            RDKafkaErrorCode::InvalidReplicationFactor
        ))
    );
    let leaders = wait_for_leaders(&nodes[1], "orders", 6);
    assert_eq!(
        leaders.values().collect::<BTreeSet<_>>(),
        all.iter().collect::<BTreeSet<_>>(),
        "partitions on every broker: {leaders:?}"
    );
    // Producer ids come from the quorum in blocks: no two brokers hand out the same one.
    let mut ids = BTreeSet::new();
    for node in &nodes {
        for _ in 0..3 {
            let mut client = protocol::client::Client::connect(&node.process.address, "ids")
                .await
                .expect("connect");
            let init = kafka_protocol::messages::InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000);
            let answer = client.send(&init).await.expect("InitProducerId");
            assert_eq!(answer.error_code, 0, "broker {}", node.id);
            assert!(
                ids.insert(answer.producer_id.0),
                "{ids:?} and {}",
                answer.producer_id.0
            );
        }
    }
    // Produced by two idempotent producers through two other brokers' bootstraps, each
    // record to its partition's leader: their producer ids differ, so neither's records
    // are taken for the other's duplicates.
    let (mut acked, through_third) = futures_util::future::join(
        produce(&nodes[1], "orders", 0..300),
        produce(&nodes[2], "orders", 300..600),
    )
    .await;
    acked.extend(through_third);
    acked.sort();
    assert_eq!(read_back(&nodes[2], "orders", 6, acked.len()), acked);

    let leader = first.controller.expect("a controller leader");
    let metrics = scrape_metrics(&nodes[0].metrics).await;
    assert!(
        metrics.contains(&format!("ringlog_cluster_controller_leader {leader}\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains("ringlog_cluster_brokers{state=\"live\"} 3\n"),
        "{metrics}"
    );

    // kill -9 the controller leader: the two others elect one of themselves and, after
    // the session timeout, stop listing it.
    let killed = nodes
        .iter()
        .position(|node| node.id == leader)
        .expect("the leader is a node");
    nodes[killed].process.kill();
    let survivors: BTreeSet<i32> = all.iter().copied().filter(|id| *id != leader).collect();
    let alive: Vec<&Node> = nodes.iter().filter(|node| node.id != leader).collect();
    let second = converge(&alive, &survivors, &survivors);
    assert_eq!(second.cluster_id, first.cluster_id);
    let metrics = scrape_metrics(&alive[0].metrics).await;
    assert!(
        metrics.contains("ringlog_cluster_brokers{state=\"fenced\"} 1\n"),
        "{metrics}"
    );

    // Topics are created and deleted while it is down: only on the brokers that are up.
    let created = admin(alive[0])
        .create_topics(
            &[NewTopic::new("payments", 4, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topics answered");
    assert_eq!(created[0], Ok("payments".to_string()));
    let payment_leaders = wait_for_leaders(alive[1], "payments", 4);
    assert!(
        payment_leaders.values().all(|id| survivors.contains(id)),
        "{payment_leaders:?}"
    );
    let deleted = admin(alive[0])
        .delete_topics(&["orders"], &AdminOptions::new())
        .await
        .expect("delete topics answered");
    assert_eq!(deleted[0], Ok("orders".to_string()));
    let paid = produce(alive[1], "payments", 0..200).await;

    // Back on its data, it registers again and every broker lists all three.
    nodes[killed].process.kill_and_restart();
    let third = converge(&nodes.iter().collect::<Vec<_>>(), &all, &all);
    assert_eq!(
        third.cluster_id, first.cluster_id,
        "the cluster keeps its id"
    );
    // It removed its copy of the topic deleted while it was down, and serves the rest.
    let wait_until = Instant::now() + CONVERGE;
    let orders_left = || -> Vec<String> {
        std::fs::read_dir(nodes[killed].process.data_dir())
            .expect("data dir")
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("orders-"))
            .collect()
    };
    while !orders_left().is_empty() {
        assert!(Instant::now() < wait_until, "{:?}", orders_left());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(read_back(&nodes[killed], "payments", 4, paid.len()), paid);

    // One consumer group joined through two different brokers: both find the same
    // coordinator, so the group splits the partitions instead of each member taking all.
    let members: Vec<BaseConsumer> = [&nodes[0], &nodes[1]]
        .iter()
        .map(|node| {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &node.process.address)
                .set("group.id", "cluster-readers")
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .set("session.timeout.ms", "6000")
                .create()
                .expect("consumer");
            consumer.subscribe(&["payments"]).expect("subscribe");
            consumer
        })
        .collect();
    let deadline = Instant::now() + CONVERGE;
    loop {
        for member in &members {
            let _ = member.poll(Duration::from_millis(100));
        }
        let assigned: Vec<BTreeSet<i32>> = members
            .iter()
            .map(|member| {
                member
                    .assignment()
                    .expect("assignment")
                    .elements()
                    .iter()
                    .map(|element| element.partition())
                    .collect()
            })
            .collect();
        let union: BTreeSet<i32> = assigned.iter().flatten().copied().collect();
        let total: usize = assigned.iter().map(BTreeSet::len).sum();
        if union == (0..4).collect() && total == 4 && assigned.iter().all(|set| !set.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group did not split 4 partitions between its 2 members: {assigned:?}"
        );
    }
}

/// A follower that has not caught up for this long leaves the ISR (short, for the test).
const REPLICA_LAG_MS: &str = "2000";

/// Replicated partitions (factor 3, min.insync.replicas 2) through repeated SIGKILLs of
/// partition leaders while librdkafka produces with acks=all: every acknowledged record is
/// read back afterwards at its acknowledged offset and nothing else is there (no record
/// twice); each killed broker restarts, catches up and rejoins the ISR. Then two of the
/// three brokers lost: acks=all is refused with NOT_ENOUGH_REPLICAS.
#[tokio::test(flavor = "multi_thread")]
async fn replicated_partitions_keep_every_acked_record_through_leader_kills() {
    let mut nodes = start_cluster(&["--replica-lag-time-max-ms", REPLICA_LAG_MS]);
    let all: BTreeSet<i32> = nodes.iter().map(|node| node.id).collect();
    converge(&nodes.iter().collect::<Vec<_>>(), &all, &all);
    let topic =
        NewTopic::new("ledger", 6, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    let created = admin(&nodes[0])
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create topics answered");
    assert_eq!(created[0], Ok("ledger".to_string()));
    let placed = wait_for_isr(&nodes[1], "ledger", 6, &all);
    for (partition, (_, replicas, _)) in &placed {
        assert_eq!(
            replicas.iter().copied().collect::<BTreeSet<_>>(),
            all,
            "partition {partition} has a replica on every broker"
        );
    }

    let mut acked = produce(&nodes[0], "ledger", 0..300).await;
    let mut next = 300;
    for round in 0..3 {
        // Kill the leader of one partition while a producer is busy, bootstrapped
        // through another broker.
        let placed = wait_for_isr(&nodes[(round + 1) % 3], "ledger", 6, &all);
        let victim_id = placed[&(round as i32)].0;
        let victim = nodes
            .iter()
            .position(|node| node.id == victim_id)
            .expect("the leader is a node");
        let bootstrap = nodes[(victim + 1) % 3].process.address.clone();
        let numbers = next..next + 600;
        next += 600;
        let python_bootstrap = bootstrap.clone();
        let python_numbers = next..next + 300;
        next += 300;
        let producing =
            tokio::spawn(async move { produce_through(&bootstrap, "ledger", numbers).await });
        let python = tokio::task::spawn_blocking(move || {
            produce_with_kafka_python(&python_bootstrap, "ledger", python_numbers)
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        nodes[victim].process.kill();
        let got = producing.await.expect("producer task");
        assert_eq!(got.len(), 600, "round {round}: every record acknowledged");
        acked.extend(got);
        let got = python.await.expect("kafka-python task");
        assert_eq!(
            got.len(),
            300,
            "round {round}: kafka-python's records acknowledged"
        );
        acked.extend(got);
        // Back on its data, it catches up and every partition has all three in sync.
        nodes[victim].process.kill_and_restart();
        wait_for_isr(&nodes[victim], "ledger", 6, &all);
    }
    acked.sort();
    let read = read_to_end(&nodes[2], "ledger", 6, acked.len()).await;
    let missing: Vec<_> = acked
        .iter()
        .filter(|record| !read.contains(record))
        .collect();
    let extra: Vec<_> = read
        .iter()
        .filter(|record| !acked.contains(record))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "acknowledged, not read back: {} {:?}; read, not acknowledged: {} {:?}",
        missing.len(),
        &missing[..missing.len().min(20)],
        extra.len(),
        &extra[..extra.len().min(20)]
    );
    assert_eq!(read, acked, "each acknowledged record at its offset");
    // The restarted brokers were taken back into the ISR by their leaders (a killed
    // leader's counts go with its process).
    // A leader counts an expansion when it applies the view that has it, which may come a
    // moment after another broker's Metadata shows the full ISR: wait for the count.
    let deadline = Instant::now() + CONVERGE;
    loop {
        let mut expands = 0;
        for node in &nodes {
            expands += metric(
                &scrape_metrics(&node.metrics).await,
                "ringlog_isr_expands_total",
            );
        }
        if expands >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ISR expansions counted: {expands}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Two of three brokers lost, one after the other: the survivor's partitions refuse
    // acks=all (min.insync.replicas 2), neither hanging nor accepting.
    let placed = wait_for_isr(&nodes[0], "ledger", 6, &all);
    let mut leads: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (partition, (leader, _, _)) in &placed {
        leads.entry(*leader).or_default().push(*partition);
    }
    let (&survivor_id, _) = leads
        .iter()
        .max_by_key(|(_, partitions)| partitions.len())
        .expect("leaders");
    let others: Vec<usize> = (0..3).filter(|i| nodes[*i].id != survivor_id).collect();
    nodes[others[0]].process.kill();
    let live: BTreeSet<i32> = all
        .iter()
        .copied()
        .filter(|id| *id != nodes[others[0]].id)
        .collect();
    let survivor = nodes
        .iter()
        .position(|node| node.id == survivor_id)
        .expect("survivor");
    let placed = wait_for_isr(&nodes[survivor], "ledger", 6, &live);
    let partition = *placed
        .iter()
        .find(|(_, (leader, _, _))| *leader == survivor_id)
        .expect("the survivor leads a partition")
        .0;
    // Its ISRs shrank, and it reports its partitions under-replicated.
    let deadline = Instant::now() + CONVERGE;
    loop {
        let metrics = scrape_metrics(&nodes[survivor].metrics).await;
        if metric(&metrics, "ringlog_isr_shrinks_total") >= 1
            && metric(&metrics, "ringlog_under_replicated_partitions") >= 1
        {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    nodes[others[1]].process.kill();
    let refused =
        produce_until_refused(&nodes[survivor].process.address, "ledger", partition).await;
    assert_eq!(refused, protocol::ErrorCode::NotEnoughReplicas.code());
}

/// kafka-python (tests/clients/replicated_producer.py) produces one keyed record per number
/// with acks=all; each (partition, offset, value) as acknowledged.
fn produce_with_kafka_python(
    bootstrap: &str,
    topic: &str,
    numbers: std::ops::Range<u32>,
) -> Vec<(i32, i64, String)> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/replicated_producer.py"
    );
    let output = std::process::Command::new("python3")
        .args([
            script,
            bootstrap,
            topic,
            &numbers.start.to_string(),
            &(numbers.end - numbers.start).to_string(),
        ])
        .output()
        .expect("python3 runs (scripts/test installs kafka-python)");
    assert!(
        output.status.success(),
        "kafka-python producer failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let mut fields = line.splitn(3, ' ');
            let partition = fields
                .next()
                .and_then(|f| f.parse().ok())
                .expect("partition");
            let offset = fields.next().and_then(|f| f.parse().ok()).expect("offset");
            let value = fields.next().expect("value").to_string();
            (partition, offset, value)
        })
        .collect()
}

/// The value of an unlabelled metric in a scrape (0 when absent).
fn metric(scrape: &str, name: &str) -> u64 {
    scrape
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Waits until `node` reports, for each of the topic's partitions, an ISR of exactly
/// `in_sync` and a leader among them; (leader, replicas, isr) by partition.
fn wait_for_isr(
    node: &Node,
    topic: &str,
    partitions: usize,
    in_sync: &BTreeSet<i32>,
) -> BTreeMap<i32, (i32, Vec<i32>, Vec<i32>)> {
    let admin = admin(node);
    let deadline = Instant::now() + CONVERGE;
    loop {
        let placed: BTreeMap<i32, (i32, Vec<i32>, Vec<i32>)> = match admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(5))
        {
            Ok(metadata) => metadata
                .topics()
                .iter()
                .flat_map(|topic| topic.partitions())
                .map(|p| {
                    (
                        p.id(),
                        (p.leader(), p.replicas().to_vec(), p.isr().to_vec()),
                    )
                })
                .collect(),
            Err(_) => BTreeMap::new(),
        };
        let settled = placed.len() == partitions
            && placed.values().all(|(leader, _, isr)| {
                in_sync.contains(leader) && isr.iter().copied().collect::<BTreeSet<_>>() == *in_sync
            });
        if settled {
            return placed;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: ISR not {in_sync:?}: {placed:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every record of the topic up to each partition's high watermark, through `node`'s
/// bootstrap, as (partition, offset, value), once the high watermarks add up to at least
/// `at_least` (a new leader's moves up as its followers fetch).
async fn read_to_end(
    node: &Node,
    topic: &str,
    partitions: i32,
    at_least: usize,
) -> Vec<(i32, i64, String)> {
    let consumer = broker::consumer_from_beginning(&node.process.address, topic, partitions);
    let deadline = Instant::now() + CONVERGE;
    let end = loop {
        let mut end = 0;
        for partition in 0..partitions {
            // A leader that moved after a restart answers NOT_LEADER for a moment: asked
            // again on the next pass.
            match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
                Ok((_, high)) => end += high as usize,
                Err(error) => assert!(Instant::now() < deadline, "watermarks: {error}"),
            }
        }
        if end >= at_least || Instant::now() > deadline {
            break end;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    read_back(node, topic, partitions, end)
}

/// Produces one record with acks=all to `partition` through `address` (its leader) until
/// it is refused; the error code.
async fn produce_until_refused(address: &str, topic: &str, partition: i32) -> i16 {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let deadline = Instant::now() + CONVERGE;
    loop {
        assert!(Instant::now() < deadline, "acks=all was never refused");
        let Ok(mut client) = protocol::client::Client::connect(address, "refused").await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut batch = protocol::record_batch::RecordBatchBuilder::new(1_700_000_000_000);
        batch.push(None, Some(b"after two brokers died"), 1_700_000_000_000);
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(bytes::Bytes::from(batch.finish())))])]);
        let response = client.send(&request).await.expect("produce answered");
        let code = response.responses[0].partition_responses[0].error_code;
        if code == protocol::ErrorCode::NotEnoughReplicas.code() {
            return code;
        }
        assert!(
            code == protocol::ErrorCode::RequestTimedOut.code()
                || code == protocol::ErrorCode::NotEnoughReplicasAfterAppend.code(),
            "acks=all with one live broker of three answered {code}"
        );
    }
}

/// Waits until `node` reports a leader for each of the topic's `partitions`.
fn wait_for_leaders(node: &Node, topic: &str, partitions: usize) -> BTreeMap<i32, i32> {
    let admin = admin(node);
    let deadline = Instant::now() + CONVERGE;
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let leaders: BTreeMap<i32, i32> = metadata
            .topics()
            .iter()
            .flat_map(|topic| topic.partitions())
            .filter(|partition| partition.leader() >= 0)
            .map(|partition| (partition.id(), partition.leader()))
            .collect();
        if leaders.len() == partitions {
            return leaders;
        }
        assert!(Instant::now() < deadline, "{topic}: leaders {leaders:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Produces one keyed record per number with acks=all; each (partition, offset, value) as
/// acknowledged.
async fn produce(
    node: &Node,
    topic: &str,
    numbers: std::ops::Range<u32>,
) -> Vec<(i32, i64, String)> {
    produce_through(&node.process.address, topic, numbers).await
}

async fn produce_through(
    bootstrap: &str,
    topic: &str,
    numbers: std::ops::Range<u32>,
) -> Vec<(i32, i64, String)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let sends = numbers.map(|number| {
        let producer = producer.clone();
        async move {
            let key = format!("key-{number}");
            let value = format!("{topic} record {number}");
            let record = FutureRecord::to(topic).key(&key).payload(&value);
            let delivery = producer
                .send(record, Duration::from_secs(60))
                .await
                .unwrap_or_else(|(error, _)| panic!("{value} not acknowledged: {error}"));
            (delivery.partition, delivery.offset, value)
        }
    });
    let mut acked = futures_util::future::join_all(sends).await;
    acked.sort();
    acked
}

/// Every record of the topic, read from the beginning of each partition through `node`'s
/// bootstrap, as (partition, offset, value).
fn read_back(node: &Node, topic: &str, partitions: i32, count: usize) -> Vec<(i32, i64, String)> {
    let consumer = broker::consumer_from_beginning(&node.process.address, topic, partitions);
    let mut received = Vec::new();
    let deadline = Instant::now() + CONVERGE;
    while received.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records of {topic} came back",
            received.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consumed message");
            received.push((
                message.partition(),
                message.offset(),
                String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    received.sort();
    received
}

/// Bad cluster flags are refused at start with the cause named, before anything is served.
#[test]
fn bad_cluster_flags_are_named() {
    let temp = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--voters", "1@127.0.0.1:1"],
            "--voters needs --cluster-listen",
        ),
        (
            &["--cluster-listen", "127.0.0.1:0"],
            "--cluster-listen needs --voters",
        ),
        (
            &[
                "--node-id",
                "4",
                "--voters",
                "1@127.0.0.1:1",
                "--cluster-listen",
                "127.0.0.1:0",
            ],
            "--node-id 4 is not among --voters",
        ),
        (
            &["--voters", "1@127.0.0.1", "--cluster-listen", "127.0.0.1:0"],
            "no HOST:PORT",
        ),
    ];
    for (flags, message) in cases {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringlog"))
            .arg("serve")
            .arg("--data-dir")
            .arg(temp.path().join("data"))
            .args(["--listen", "127.0.0.1:0", "--cores", "1", "--no-pin"])
            .args(flags)
            .output()
            .expect("run ringlog serve");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} started");
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
    }
}

/// A client of `group` (not subscribed) that commits only when told to.
fn group_client(node: &Node, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", &node.process.address)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// The offsets of `group` committed for `topic`'s partitions, as a member bootstrapped
/// through `node` reads them (retried while the coordinator moves), once they equal
/// `expected` (partition -> offset; a partition absent has none).
fn wait_for_committed(
    node: &Node,
    group: &str,
    topic: &str,
    partitions: i32,
    expected: &BTreeMap<i32, i64>,
) {
    let consumer = group_client(node, group);
    let mut wanted = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    let deadline = Instant::now() + CONVERGE;
    let mut last = None;
    loop {
        if let Ok(committed) = consumer.committed_offsets(wanted.clone(), Duration::from_secs(5)) {
            let seen: BTreeMap<i32, i64> = committed
                .elements()
                .iter()
                .filter_map(|element| match element.offset() {
                    rdkafka::Offset::Offset(offset) => Some((element.partition(), offset)),
                    _ => None,
                })
                .collect();
            if seen == *expected {
                return;
            }
            last = Some(seen);
        }
        assert!(
            Instant::now() < deadline,
            "{group}: committed {last:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Commits `offsets` for `group` through `node` (retried while the coordinator moves).
fn commit_through(node: &Node, group: &str, topic: &str, offsets: &BTreeMap<i32, i64>) {
    let consumer = group_client(node, group);
    let mut list = rdkafka::TopicPartitionList::new();
    for (partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*offset))
            .expect("offset");
    }
    let deadline = Instant::now() + CONVERGE;
    loop {
        match consumer.commit(&list, rdkafka::consumer::CommitMode::Sync) {
            Ok(()) => return,
            Err(error) => assert!(
                Instant::now() < deadline,
                "{group}: commit not accepted: {error}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Three brokers with `flags` that agree on their controller and on each other, and a topic
/// `name` of 3 partitions with every replica in sync; the brokers and their ids.
async fn cluster_with_topic(flags: &[&str], name: &str) -> (Vec<Node>, BTreeSet<i32>) {
    let nodes = start_cluster(flags);
    let all: BTreeSet<i32> = nodes.iter().map(|node| node.id).collect();
    converge(&nodes.iter().collect::<Vec<_>>(), &all, &all);
    let topic = NewTopic::new(name, 3, TopicReplication::Fixed(3));
    let created = admin(&nodes[0])
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create topics answered");
    assert_eq!(created[0], Ok(name.to_string()));
    wait_for_isr(&nodes[0], name, 3, &all);
    (nodes, all)
}
/// Committed offsets live in the replicated `__consumer_offsets`: each broker is killed
/// in turn, so the group's coordinator is killed at least once (its partition's
/// leadership moves only when its broker dies); after each kill a client of a survivor
/// reads back exactly the offsets committed before it, and commits again.
#[tokio::test(flavor = "multi_thread")]
async fn committed_offsets_survive_the_coordinators_broker_being_killed() {
    let (mut nodes, all) = cluster_with_topic(&[], "tracked").await;
    let mut expected = BTreeMap::new();
    for round in 0..3usize {
        let survivor = &nodes[(round + 1) % 3];
        wait_for_committed(survivor, "keeper", "tracked", 3, &expected);
        expected = (0..3)
            .map(|p| (p, (round as i64 + 1) * 100 + p as i64))
            .collect();
        commit_through(survivor, "keeper", "tracked", &expected);
        nodes[round].process.kill();
        wait_for_committed(&nodes[(round + 1) % 3], "keeper", "tracked", 3, &expected);
        nodes[round].process.kill_and_restart();
        wait_for_isr(&nodes[round], "__consumer_offsets", 16, &all);
    }
    // The internal topic refuses clients' writes and deletion.
    let deleted = admin(&nodes[1])
        .delete_topics(&["__consumer_offsets"], &AdminOptions::new())
        .await
        .expect("delete topics answered");
    assert!(deleted[0].is_err(), "{deleted:?}");
    wait_for_committed(&nodes[2], "keeper", "tracked", 3, &expected);
}

const GROUP_FLAGS: &[&str] = &[
    "--group-min-session-timeout-ms",
    "100",
    "--group-initial-rebalance-delay-ms",
    "500",
];

/// The node id of `group`'s coordinator as `ringlog group describe` names it, asked of
/// `node`.
fn coordinator_of(node: &Node, group: &str) -> i32 {
    let (ok, stdout, stderr) = node.process.cli(&["group", "describe", group], "");
    assert!(ok, "group describe {group}: {stderr}");
    let head: Vec<&str> = stdout
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let at = head
        .iter()
        .position(|word| *word == "COORDINATOR")
        .unwrap_or_else(|| panic!("no coordinator in {stdout}"));
    head[at + 1].parse().expect("coordinator id")
}

/// The consumer-group scenario (three members, one dies) while the group coordinator's
/// broker is killed: the member in its own process is killed together with the coordinator's
/// broker; the two survivors take over its partition from its committed offset once a new
/// coordinator leads, every message reaching exactly one member; a member joining after the
/// broker is back gets its share.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_keeps_consuming_when_its_coordinators_broker_and_a_member_die() {
    use members::{member, next_message, poll_until, process_member, settled_assignment};
    use rdkafka::consumer::CommitMode;
    let (mut nodes, all) = cluster_with_topic(GROUP_FLAGS, "spread").await;
    let bootstrap = nodes
        .iter()
        .map(|node| node.process.address.clone())
        .collect::<Vec<_>>()
        .join(",");
    let a = member(&bootstrap, "my-app", "spread");
    let b = member(&bootstrap, "my-app", "spread");
    let mut c = process_member(&bootstrap, "my-app", "spread");
    // c holds one partition once all three joined (a member may find the coordinator a
    // moment later than the others while __consumer_offsets gets its leaders).
    let held = one_partition_each(&[&a, &b], 2);
    let c_partition = (0..3)
        .find(|p| !held.iter().any(|h| h.contains(p)))
        .unwrap();
    let keys_of = |acked: &[(i32, i64, String)]| -> Vec<(i32, String)> {
        acked.iter().map(|(p, _, v)| (*p, v.clone())).collect()
    };
    let acked = produce_through(&bootstrap, "spread", 0..30).await;
    let mut everything = acked.clone();
    let mut received: Vec<Vec<(i32, String)>> = vec![Vec::new(), Vec::new(), Vec::new()];
    let deadline = Instant::now() + CONVERGE;
    while received.iter().map(Vec::len).sum::<usize>() < 30 {
        assert!(Instant::now() < deadline, "received {received:?}");
        if let Ok(message) = c.messages.recv_timeout(Duration::from_millis(50)) {
            received[2].push(message);
        }
        for (at, consumer) in [&a, &b].iter().enumerate() {
            if let Some((partition, value, _)) = next_message(consumer, Duration::from_millis(10)) {
                received[at].push((partition, value));
            }
        }
    }
    let mut held_all = held.clone();
    held_all.push(BTreeSet::from([c_partition]));
    assert_exactly_once(&received, &held_all, &keys_of(&acked));
    for consumer in [&a, &b] {
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .expect("commit");
    }
    // c auto-commits every 100 ms: once its commit covers what it read, kill it and the
    // coordinator's broker.
    let read_by_c = received[2].len() as i64;
    wait_for_committed(
        &nodes[0],
        "my-app",
        "spread",
        3,
        &(0..3)
            .map(|p| {
                let count = acked
                    .iter()
                    .filter(|(partition, ..)| *partition == p)
                    .count();
                (p, count as i64)
            })
            .filter(|(_, count)| *count > 0)
            .collect(),
    );
    assert!(read_by_c > 0, "c read nothing");
    let coordinator = coordinator_of(&nodes[0], "my-app");
    let at = nodes
        .iter()
        .position(|node| node.id == coordinator)
        .expect("a node of the cluster");
    nodes[at].process.kill();
    c.kill();
    let killed_at = Instant::now();
    let held = settled_assignment(&[&a, &b], 3);
    let took_over = killed_at.elapsed();
    let survivor = &nodes[(at + 1) % 3];
    let new_coordinator = coordinator_of(survivor, "my-app");
    assert_ne!(new_coordinator, coordinator, "the coordinator moved");
    let survivors = nodes
        .iter()
        .filter(|node| node.id != coordinator)
        .map(|node| node.process.address.clone())
        .collect::<Vec<_>>()
        .join(",");
    let acked = produce_through(&survivors, "spread", 30..60).await;
    everything.extend(acked.iter().cloned());
    let received = poll_until(&[&a, &b], 30);
    assert_exactly_once(&received, &held, &keys_of(&acked));
    eprintln!("two members held all three partitions {took_over:?} after the kills");
    for consumer in [&a, &b] {
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .expect("commit");
    }
    // The broker comes back; a new member gets one partition, from the committed offsets.
    nodes[at].process.kill_and_restart();
    wait_for_isr(&nodes[at], "spread", 3, &all);
    let d = member(&bootstrap, "my-app", "spread");
    let held = one_partition_each(&[&a, &b, &d], 3);
    let acked = produce_through(&bootstrap, "spread", 60..90).await;
    everything.extend(acked.iter().cloned());
    let received = poll_until(&[&a, &b, &d], 30);
    assert_exactly_once(&received, &held, &keys_of(&acked));

    // The CLI sends each partition's requests to its leader, as a client does: given one
    // broker, it produces keyed records and reads every partition back, whoever leads it.
    let (ok, _, stderr) = nodes[1].process.cli(
        &["produce", "spread", "-K", ":"],
        "k-a:cli 1\nk-b:cli 2\nk-c:cli 3\nk-d:cli 4\n",
    );
    assert!(ok, "ringlog produce: {stderr}");
    let format = ["-f", "%p %o %s"];
    let (ok, stdout, stderr) = nodes[1].process.cli(
        &[
            &["consume", "spread", "--from-beginning", "-e"][..],
            &format[..],
        ]
        .concat(),
        "",
    );
    assert!(ok, "ringlog consume: {stderr}");
    let mut read: Vec<(i32, i64, String)> = stdout
        .lines()
        .map(|line| {
            let mut fields = line.splitn(3, ' ');
            let partition = fields.next().unwrap().parse().unwrap();
            let offset = fields.next().unwrap().parse().unwrap();
            (partition, offset, fields.next().unwrap().to_string())
        })
        .collect();
    let (from_cli, mut from_clients): (Vec<_>, Vec<_>) = read
        .drain(..)
        .partition(|(_, _, value)| value.starts_with("cli "));
    from_clients.sort();
    everything.sort();
    assert_eq!(
        from_clients, everything,
        "every acknowledged record, at its offset"
    );
    let mut values: Vec<&str> = from_cli
        .iter()
        .map(|(_, _, value)| value.as_str())
        .collect();
    values.sort();
    assert_eq!(values, ["cli 1", "cli 2", "cli 3", "cli 4"]);
}

/// Waits until `members` settle on one partition each, `partitions` in total (others held
/// elsewhere).
fn one_partition_each(
    members: &[&rdkafka::consumer::BaseConsumer],
    partitions: usize,
) -> Vec<BTreeSet<i32>> {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let held = members::settled_assignment(members, partitions);
        if held.iter().all(|p| p.len() == 1) {
            return held;
        }
        assert!(
            Instant::now() < deadline,
            "never one partition each: {held:?}"
        );
    }
}

/// Each member got exactly the acknowledged messages of the partitions it holds, each once,
/// per partition in acknowledged order.
fn assert_exactly_once(
    received: &[Vec<(i32, String)>],
    held: &[BTreeSet<i32>],
    acked: &[(i32, String)],
) {
    let mut all: Vec<(i32, String)> = received.iter().flatten().cloned().collect();
    all.sort();
    let mut expected = acked.to_vec();
    expected.sort();
    assert_eq!(all, expected, "every acknowledged message exactly once");
    members::assert_only_held(received, held);
    let partitions: BTreeSet<i32> = acked.iter().map(|(p, _)| *p).collect();
    for partition in partitions {
        let order: Vec<&String> = acked
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|(_, v)| v)
            .collect();
        let seen: Vec<&String> = received
            .iter()
            .flatten()
            .filter(|(p, _)| *p == partition)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(seen, order, "partition {partition} in acknowledged order");
    }
}

/// CreatePartitions and topic config changes go through the quorum: asked of one broker,
/// every broker sees the new partitions (each with three in-sync replicas) and the new
/// configs, records are acknowledged in the new partitions and read back at their offsets,
/// and the config takes effect where each partition is led.
#[tokio::test(flavor = "multi_thread")]
async fn new_partitions_and_topic_configs_reach_every_broker() {
    use rdkafka::admin::{AlterConfig, NewPartitions, ResourceSpecifier};
    let (nodes, all) = cluster_with_topic(&[], "grown").await;
    let grown = admin(&nodes[1])
        .create_partitions(&[NewPartitions::new("grown", 5)], &AdminOptions::new())
        .await
        .expect("create partitions answered");
    assert_eq!(grown[0], Ok("grown".to_string()));
    for node in &nodes {
        let placed = wait_for_isr(node, "grown", 5, &all);
        assert!(placed.values().all(|(_, replicas, _)| replicas.len() == 3));
    }
    let too_few = admin(&nodes[0])
        .create_partitions(&[NewPartitions::new("grown", 4)], &AdminOptions::new())
        .await
        .expect("create partitions answered");
    assert!(
        matches!(too_few[0], Err((_, RDKafkaErrorCode::InvalidPartitions))),
        "{too_few:?}"
    );
    let bootstrap = nodes
        .iter()
        .map(|node| node.process.address.clone())
        .collect::<Vec<_>>()
        .join(",");
    let acked = produce_through(&bootstrap, "grown", 0..200).await;
    let used: BTreeSet<i32> = acked.iter().map(|(partition, ..)| *partition).collect();
    assert!(used.contains(&3) && used.contains(&4), "{used:?}");
    assert_eq!(read_back(&nodes[2], "grown", 5, acked.len()), acked);

    let alter =
        AlterConfig::new(ResourceSpecifier::Topic("grown")).set("max.message.bytes", "2000");
    let altered = admin(&nodes[2])
        .alter_configs(&[alter], &AdminOptions::new())
        .await
        .expect("alter configs answered");
    assert!(altered[0].is_ok(), "{altered:?}");
    for node in &nodes {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let described = admin(node)
                .describe_configs(&[ResourceSpecifier::Topic("grown")], &AdminOptions::new())
                .await
                .expect("describe configs answered");
            let value = described[0]
                .as_ref()
                .ok()
                .and_then(|resource| resource.get("max.message.bytes"))
                .and_then(|entry| entry.value.clone());
            if value.as_deref() == Some("2000") {
                break;
            }
            assert!(Instant::now() < deadline, "broker {}: {value:?}", node.id);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Every partition's leader refuses a batch over the new limit.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    let big = "x".repeat(5_000);
    for partition in 0..5 {
        let sent = producer
            .send(
                FutureRecord::<(), _>::to("grown")
                    .partition(partition)
                    .payload(&big),
                Duration::from_secs(30),
            )
            .await;
        match sent {
            Err((error, _)) => assert_eq!(
                error.rdkafka_error_code(),
                Some(RDKafkaErrorCode::MessageSizeTooLarge),
                "partition {partition}: {error}"
            ),
            Ok(delivery) => {
                panic!("partition {partition}: a 5,000-byte record stored: {delivery:?}")
            }
        }
    }
}

/// The whole batches at the start of a segment file (its preallocated tail left out).
fn whole_batches(bytes: &[u8]) -> &[u8] {
    use protocol::record_batch::BatchHeader;
    let mut end = 0;
    while let Ok(header) = BatchHeader::parse(&bytes[end..]) {
        if header.total_bytes() == 0 || end + header.total_bytes() > bytes.len() {
            break;
        }
        end += header.total_bytes();
    }
    &bytes[..end]
}

/// A follower that lost the tail of its log while it was down (the segment file cut in the
/// middle of its data, as a disk that lost unsynced writes leaves it) recovers at a whole
/// batch, catches up from the leader and rejoins the ISR, and then holds exactly the
/// leader's batches, byte for byte (offsets and leader epochs included), one per record
/// acknowledged to that partition.
#[tokio::test(flavor = "multi_thread")]
async fn a_follower_that_lost_its_log_tail_catches_up_byte_for_byte() {
    let (mut nodes, all) = cluster_with_topic(&[], "tail").await;
    let bootstrap = nodes
        .iter()
        .map(|node| node.process.address.clone())
        .collect::<Vec<_>>()
        .join(",");
    let mut acked = produce_through(&bootstrap, "tail", 0..300).await;
    let leader = wait_for_isr(&nodes[0], "tail", 3, &all)[&0].0;
    let follower = nodes.iter().position(|node| node.id != leader).unwrap();
    let segment = |node: &Node| {
        node.process
            .data_dir()
            .join("tail-0")
            .join("00000000000000000000.log")
    };
    nodes[follower].process.kill();
    let bytes = std::fs::read(segment(&nodes[follower])).unwrap();
    let kept = whole_batches(&bytes).len();
    assert!(kept > 0, "the follower had data");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(segment(&nodes[follower]))
        .unwrap();
    file.set_len(kept as u64 / 2).unwrap();
    drop(file);
    nodes[follower].process.kill_and_restart();
    acked.extend(produce_through(&bootstrap, "tail", 300..400).await);
    wait_for_isr(&nodes[0], "tail", 3, &all);
    let leader_at = nodes.iter().position(|node| node.id == leader).unwrap();
    let in_partition = acked
        .iter()
        .filter(|(partition, ..)| *partition == 0)
        .count();
    let deadline = Instant::now() + CONVERGE;
    loop {
        let theirs = std::fs::read(segment(&nodes[leader_at])).unwrap();
        let ours = std::fs::read(segment(&nodes[follower])).unwrap();
        let (theirs, ours) = (whole_batches(&theirs), whole_batches(&ours));
        // Offsets are dense from 0: the records are the last batch's last offset + 1.
        let records = {
            let mut at = 0;
            let mut end = 0;
            while at < theirs.len() {
                let header = protocol::record_batch::BatchHeader::parse(&theirs[at..]).unwrap();
                end = header.last_offset() as usize + 1;
                at += header.total_bytes();
            }
            end
        };
        if ours == theirs && records == in_partition {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "follower {} bytes, leader {} bytes with {records} of {in_partition} records",
            ours.len(),
            theirs.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
