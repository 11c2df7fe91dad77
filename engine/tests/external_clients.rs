//! Clients outside Rust against a real ringlog process: kcat, kafka-python and
//! confluent-kafka (tests/clients/python_clients.py), kafkajs (tests/clients/kafkajs).
//! `scripts/test` installs them; a missing one fails the test with the install command.

mod broker;

use std::path::Path;
use std::process::Command;

use broker::BrokerProcess;

fn clients_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients"))
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {program} ({error}); scripts/test installs it"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn kcat_lists_metadata_and_round_trips_keys_and_headers() {
    let broker = BrokerProcess::start(2);
    let (ok, _, err) = broker.cli(&["topic", "create", "kcat-topic", "--partitions", "2"], "");
    assert!(ok, "{err}");
    let (ok, out, err) = run("kcat", &["-b", &broker.address, "-L"], None);
    assert!(ok, "{err}");
    assert!(
        out.contains("topic \"kcat-topic\" with 2 partitions"),
        "{out}"
    );
    let (ok, _, err) = run(
        "kcat",
        &[
            "-b",
            &broker.address,
            "-X",
            "partitioner=murmur2_random",
            "-P",
            "-t",
            "kcat-topic",
            "-K:",
            "-H",
            "origin=kcat",
        ],
        Some("alpha:one\nbeta:two\nalpha:three\n"),
    );
    assert!(ok, "{err}");
    let (ok, out, err) = run(
        "kcat",
        &[
            "-b",
            &broker.address,
            "-C",
            "-t",
            "kcat-topic",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%k=%s %h %p\n",
        ],
        None,
    );
    assert!(ok, "{err}");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    let alpha = protocol::partitioner::partition_for_key(b"alpha", 2);
    let beta = protocol::partitioner::partition_for_key(b"beta", 2);
    assert_eq!(
        lines,
        vec![
            format!("alpha=one origin=kcat {alpha}"),
            format!("alpha=three origin=kcat {alpha}"),
            format!("beta=two origin=kcat {beta}")
        ],
        "with partitioner=murmur2_random kcat places keys as Java does: {out}"
    );
}

#[test]
fn kafka_python_and_confluent_kafka() {
    let broker = BrokerProcess::start_with(2, &["--group-initial-rebalance-delay-ms", "300"]);
    let script = clients_dir().join("python_clients.py");
    let (ok, out, err) = run(
        "python3",
        &[script.to_str().unwrap(), &broker.address],
        None,
    );
    assert!(ok, "python clients failed:\n{out}\n{err}");
    assert!(
        out.contains("kafka-python ok")
            && out.contains("confluent-kafka ok")
            && out.contains("kafka-python group ok")
            && out.contains("confluent-kafka manual commits ok")
            && out.contains("confluent-kafka authorized operations ok")
            && out.contains("confluent-kafka admin offsets on an active group ok")
            && out.contains("kafka-python delete_records ok")
            && out.contains("kafka-python broker configs ok"),
        "{out}"
    );
}

#[test]
fn kafkajs_tutorial_producer_and_consumer() {
    let broker = BrokerProcess::start_with(2, &["--group-initial-rebalance-delay-ms", "300"]);
    let script = clients_dir().join("kafkajs/tutorial.js");
    let (ok, out, err) = run("node", &[script.to_str().unwrap(), &broker.address], None);
    assert!(ok, "kafkajs failed:\n{out}\n{err}");
    assert!(out.contains("kafkajs ok"), "{out}");
}

/// What one kafkajs member process printed so far.
#[derive(Default, Debug, Clone)]
struct MemberLog {
    assigned: Vec<i32>,
    joins: usize,
    messages: Vec<(i32, String)>,
}

#[test]
fn kafkajs_tutorial_consumer_in_three_processes_shares_the_partitions() {
    use std::collections::BTreeSet;
    use std::io::BufRead;
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let broker = BrokerProcess::start_with(
        2,
        &[
            "--group-initial-rebalance-delay-ms",
            "1000",
            "--group-min-session-timeout-ms",
            "1000",
        ],
    );
    let (ok, _, err) = broker.cli(&["topic", "create", "tutorial", "--partitions", "3"], "");
    assert!(ok, "{err}");
    let script = clients_dir().join("kafkajs/group_member.js");
    let logs: Vec<Arc<Mutex<MemberLog>>> = (0..3).map(|_| Arc::default()).collect();
    let mut children = Vec::new();
    for log in &logs {
        let mut child = Command::new("node")
            .args([
                script.to_str().unwrap(),
                &broker.address,
                "tutorial",
                "my-app3",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("node (scripts/test installs kafkajs)");
        let stdout = child.stdout.take().unwrap();
        let log = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let mut log = log.lock().unwrap();
                if let Some(json) = line.strip_prefix("assigned ") {
                    log.assigned = serde_json::from_str(json).unwrap();
                    log.joins += 1;
                } else if let Some(rest) = line.strip_prefix("message ") {
                    let (partition, value) = rest.split_once(' ').unwrap();
                    log.messages
                        .push((partition.parse().unwrap(), value.to_string()));
                }
            }
        });
        children.push(child);
    }
    let snapshot =
        || -> Vec<MemberLog> { logs.iter().map(|l| l.lock().unwrap().clone()).collect() };
    // Settled: every process joined, one partition each, unchanged for 2 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last: Vec<(usize, Vec<i32>)> = Vec::new();
    let mut since = Instant::now();
    loop {
        let now: Vec<(usize, Vec<i32>)> = snapshot()
            .into_iter()
            .map(|log| (log.joins, log.assigned))
            .collect();
        if now != last {
            last = now;
            since = Instant::now();
        }
        let partitions: BTreeSet<i32> = last.iter().flat_map(|(_, a)| a.clone()).collect();
        let one_each = last.iter().all(|(joins, a)| *joins > 0 && a.len() == 1);
        if one_each && partitions.len() == 3 && since.elapsed() > Duration::from_secs(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kafkajs members never settled: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines: String = (0..90).map(|i| format!("k{}:v{i}\n", i % 10)).collect();
    let (ok, _, err) = broker.cli(&["produce", "tutorial", "-K", ":"], &lines);
    assert!(ok, "{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while snapshot().iter().map(|l| l.messages.len()).sum::<usize>() < 90 {
        assert!(Instant::now() < deadline, "consumed {:?}", snapshot());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let logs = snapshot();
    let mut values: Vec<String> = logs
        .iter()
        .flat_map(|l| l.messages.iter().map(|(_, v)| v.clone()))
        .collect();
    values.sort();
    let mut expected: Vec<String> = (0..90).map(|i| format!("v{i}")).collect();
    expected.sort();
    assert_eq!(
        values, expected,
        "every message once across the three processes"
    );
    for log in &logs {
        assert!(
            log.messages.iter().all(|(p, _)| log.assigned.contains(p)),
            "a process got messages of a partition it does not hold: {log:?}"
        );
    }
    for mut child in children {
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = child.wait();
    }
}
