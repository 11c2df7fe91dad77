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
    let broker = BrokerProcess::start(2);
    let script = clients_dir().join("python_clients.py");
    let (ok, out, err) = run(
        "python3",
        &[script.to_str().unwrap(), &broker.address],
        None,
    );
    assert!(ok, "python clients failed:\n{out}\n{err}");
    assert!(
        out.contains("kafka-python ok") && out.contains("confluent-kafka ok"),
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
