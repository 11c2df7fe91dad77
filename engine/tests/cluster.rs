//! Three real `ringlog serve` processes forming a cluster on loopback: the controller quorum
//! elects a leader, every broker registers and is listed by each broker's Metadata (read by
//! librdkafka) and DescribeCluster (read by `ringlog cluster describe`); the controller
//! leader killed with SIGKILL is replaced, fenced once its session times out, and listed
//! again after it restarts on its data.

mod broker;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use broker::{free_local_address, scrape_metrics, BrokerProcess};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
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

fn start_cluster() -> Vec<Node> {
    let cluster_addresses: Vec<String> = (0..3).map(|_| free_local_address()).collect();
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
            let metrics = free_local_address();
            let id_text = id.to_string();
            let process = BrokerProcess::start_with(
                1,
                &[
                    "--node-id",
                    &id_text,
                    "--voters",
                    &voters,
                    "--cluster-listen",
                    cluster_address,
                    "--rack",
                    &format!("rack-{id}"),
                    "--broker-heartbeat-interval-ms",
                    HEARTBEAT_MS,
                    "--broker-session-timeout-ms",
                    SESSION_TIMEOUT_MS,
                    "--metrics-listen",
                    &metrics,
                ],
            );
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
    let mut nodes = start_cluster();
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

    // Topics are not kept by the quorum yet: creating one is refused, not split between
    // brokers that would each keep their own.
    let refused = admin(&nodes[0])
        .create_topics(
            &[NewTopic::new("orders", 3, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topics answered");
    match &refused[0] {
        Err((name, code)) => {
            assert_eq!(name, "orders");
            assert_eq!(*code, RDKafkaErrorCode::InvalidRequest);
        }
        Ok(name) => panic!("topic {name} was created on one broker of a cluster"),
    }

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

    // Back on its data, it registers again and every broker lists all three.
    nodes[killed].process.kill_and_restart();
    let third = converge(&nodes.iter().collect::<Vec<_>>(), &all, &all);
    assert_eq!(
        third.cluster_id, first.cluster_id,
        "the cluster keeps its id"
    );
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
