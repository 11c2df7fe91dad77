//! The broker against what operators and crashes do, on a real `ringlog serve`: topics
//! deleted and created again under the same name across kill -9, partitions that cannot be
//! opened, and the limits on connections and buffered request bytes.

mod broker;

use std::path::Path;

use broker::BrokerProcess;

/// The records of `topic` from the beginning, as `partition:value` lines, sorted.
fn read_all(broker: &BrokerProcess, topic: &str) -> Vec<String> {
    let (ok, out, err) = broker.cli(
        &["consume", topic, "--from-beginning", "-e", "-f", "%p:%s"],
        "",
    );
    assert!(ok, "consume {topic}: {err}");
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

fn create_and_fill(broker: &BrokerProcess, topic: &str, tag: &str) -> Vec<String> {
    let (ok, _, err) = broker.cli(&["topic", "create", topic, "-p", "2"], "");
    assert!(ok, "create {topic}: {err}");
    let mut expected = Vec::new();
    for partition in ["0", "1"] {
        let input: String = (0..3).map(|i| format!("{tag} {i}\n")).collect();
        let (ok, _, err) = broker.cli(&["produce", topic, "-p", partition], &input);
        assert!(ok, "produce {topic}: {err}");
        expected.extend((0..3).map(|i| format!("{partition}:{tag} {i}")));
    }
    expected.sort();
    assert_eq!(read_all(broker, topic), expected);
    expected
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A topic deleted and created again under its name starts empty however a kill -9 cuts the
/// deletion short: right after DeleteTopics is answered, and with the old partition
/// directories put back as if their rename and removal never ran (a crash between the
/// catalog change and the directories' rename).
#[tokio::test]
async fn a_deleted_topic_created_again_never_serves_the_old_records() {
    let mut broker = BrokerProcess::start(2);
    for round in 0..3 {
        create_and_fill(&broker, "ledger", &format!("old {round}"));
        let (ok, _, err) = broker.cli(&["topic", "delete", "ledger"], "");
        assert!(ok, "{err}");
        broker.kill_and_restart();
        let (ok, _, err) = broker.cli(&["topic", "create", "ledger", "-p", "2"], "");
        assert!(ok, "{err}");
        assert_eq!(
            read_all(&broker, "ledger"),
            Vec::<String>::new(),
            "round {round}"
        );
        let (ok, _, err) = broker.cli(&["topic", "delete", "ledger"], "");
        assert!(ok, "{err}");
    }

    create_and_fill(&broker, "journal", "old");
    broker.kill();
    let backup = tempfile::tempdir().unwrap();
    for partition in ["journal-0", "journal-1"] {
        copy_dir(
            &broker.data_dir().join(partition),
            &backup.path().join(partition),
        );
    }
    broker.kill_and_restart();
    let (ok, _, err) = broker.cli(&["topic", "delete", "journal"], "");
    assert!(ok, "{err}");
    broker.kill();
    for partition in ["journal-0", "journal-1"] {
        let dir = broker.data_dir().join(partition);
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&backup.path().join(partition), &dir);
    }
    broker.kill_and_restart();
    for partition in ["journal-0", "journal-1"] {
        assert!(
            !broker.data_dir().join(partition).exists(),
            "{partition}: a deleted topic's directory is removed at start-up"
        );
    }
    let (ok, _, err) = broker.cli(&["topic", "create", "journal", "-p", "2"], "");
    assert!(ok, "{err}");
    assert_eq!(read_all(&broker, "journal"), Vec::<String>::new());
    let (ok, _, err) = broker.cli(&["produce", "journal", "-p", "0"], "new\n");
    assert!(ok, "{err}");
    assert_eq!(read_all(&broker, "journal"), vec!["0:new".to_string()]);

    // The same with the directories of a topic created again put back under the new topic:
    // a partition directory of another topic id is discarded when the partition opens.
    broker.kill();
    let _ = std::fs::remove_dir_all(broker.data_dir().join("journal-1"));
    copy_dir(
        &backup.path().join("journal-1"),
        &broker.data_dir().join("journal-1"),
    );
    broker.kill_and_restart();
    assert_eq!(read_all(&broker, "journal"), vec!["0:new".to_string()]);
    let leftovers: Vec<String> = std::fs::read_dir(broker.data_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with("-delete"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// With a low open files limit, topics are created until their files would eat into the
/// spare margin; the next CreateTopics is refused naming the cause and leaves nothing
/// behind (no catalog entry, no directory); the topics that fit keep working, and a restart
/// under the same limit serves them all and keeps taking connections.
#[tokio::test]
async fn a_low_open_files_limit_gives_clear_refusals_and_a_clean_restart() {
    let mut broker = BrokerProcess::start_with_open_files(2, 160);
    let mut created = Vec::new();
    let refusal = loop {
        let topic = format!("t{}", created.len());
        let (ok, out, err) = broker.cli(&["topic", "create", &topic, "-p", "8"], "");
        if !ok {
            break format!("{out}{err}");
        }
        created.push(topic);
        assert!(created.len() < 40, "160 open files never ran out");
    };
    assert!(!created.is_empty(), "no topic fit: {refusal}");
    assert!(
        refusal.contains("not enough open files for 8 more partitions"),
        "{refusal}"
    );
    let refused = format!("t{}", created.len());
    let (ok, out, err) = broker.cli(&["topic", "list"], "");
    assert!(ok, "{err}");
    assert!(
        !out.lines()
            .any(|line| line.split_whitespace().next() == Some(refused.as_str())),
        "{out}"
    );
    assert!(
        (0..8).all(|p| !broker.data_dir().join(format!("{refused}-{p}")).exists()),
        "the refused topic's directories are gone"
    );
    let (ok, _, err) = broker.cli(&["produce", &created[0], "-p", "3"], "kept\n");
    assert!(ok, "{err}");

    broker.kill_and_restart();
    let (ok, out, err) = broker.cli(&["topic", "list"], "");
    assert!(ok, "{err}");
    for topic in &created {
        assert!(
            out.lines()
                .any(|line| line.split_whitespace().next() == Some(topic.as_str())),
            "{topic} in {out}"
        );
        let online = (0..8).map(|p| (p, 0, 0)).collect::<Vec<_>>();
        assert_eq!(partition_states(&broker, topic).await, online, "{topic}");
    }
    assert_eq!(read_all(&broker, &created[0]), vec!["3:kept".to_string()]);
}

/// Metadata's view of `topic`: (partition, error code, leader) for each partition.
async fn partition_states(broker: &BrokerProcess, topic: &str) -> Vec<(i32, i16, i32)> {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut client = protocol::client::Client::connect(&broker.address, "states")
        .await
        .unwrap();
    let request =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))]));
    let response = client.send(&request).await.unwrap();
    response.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.error_code, p.leader_id.0))
        .collect()
}

/// A partition that cannot be opened at start-up (its partition.metadata is damaged) leaves
/// the broker serving the others; Metadata reports it with KAFKA_STORAGE_ERROR and no
/// leader; once the cause is repaired the next request opens it, without a restart.
#[tokio::test]
async fn a_partition_that_cannot_open_is_offline_and_the_rest_serve() {
    let metrics = broker::free_local_address();
    let mut broker = BrokerProcess::start_with(2, &["--metrics-listen", &metrics]);
    let offline_line = "ringlog_partition_offline{topic=\"split\",partition=\"1\"} 1";
    let expected = create_and_fill(&broker, "split", "kept");
    broker.kill();
    let metadata = broker.data_dir().join("split-1").join("partition.metadata");
    let original = std::fs::read(&metadata).unwrap();
    std::fs::write(&metadata, b"garbage").unwrap();
    broker.kill_and_restart();
    assert_eq!(
        partition_states(&broker, "split").await,
        vec![
            (0, 0, 0),
            (1, protocol::ErrorCode::KafkaStorageError.code(), -1)
        ]
    );
    let (ok, out, err) = broker.cli(
        &["consume", "split", "-p", "0", "--from-beginning", "-e"],
        "",
    );
    assert!(
        ok && out.lines().count() == 3,
        "partition 0 serves: {out}{err}"
    );
    let text = broker::scrape_metrics(&metrics).await;
    assert!(text.contains(offline_line), "{text}");
    assert!(text.contains("ringlog_queued_request_bytes "), "{text}");
    let (ok, _, err) = broker.cli(&["produce", "split", "-p", "1"], "refused\n");
    assert!(!ok, "a produce to the offline partition fails");
    assert!(
        err.contains("KafkaStorageError") || err.contains("56"),
        "{err}"
    );

    std::fs::write(&metadata, original).unwrap();
    let (ok, _, err) = broker.cli(&["produce", "split", "-p", "1"], "after repair\n");
    assert!(ok, "{err}");
    assert_eq!(
        partition_states(&broker, "split").await,
        vec![(0, 0, 0), (1, 0, 0)]
    );
    assert!(!broker::scrape_metrics(&metrics)
        .await
        .contains(offline_line));
    let mut all = expected;
    all.push("1:after repair".to_string());
    all.sort();
    assert_eq!(read_all(&broker, "split"), all);
}

/// Whether the broker closed `stream` (or reset it) within a second.
async fn closed_by_broker(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    match tokio::time::timeout(std::time::Duration::from_secs(1), stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// An ApiVersions round trip on a fresh connection.
async fn answers(broker: &BrokerProcess) -> bool {
    match protocol::client::Client::connect(&broker.address, "probe").await {
        Ok(mut client) => client
            .send(&kafka_protocol::messages::ApiVersionsRequest::default())
            .await
            .is_ok(),
        Err(_) => false,
    }
}

/// max.connections.per.ip and max.connections: connections past either are closed as they
/// arrive, the admitted ones keep working, and a closed one frees its place.
#[tokio::test]
async fn connections_past_the_limits_are_closed_and_places_are_freed() {
    for flag in ["--max-connections-per-ip", "--max-connections"] {
        let broker = BrokerProcess::start_with(1, &[flag, "3"]);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(
                tokio::net::TcpStream::connect(&broker.address)
                    .await
                    .unwrap(),
            );
        }
        for stream in &mut held {
            assert!(
                !closed_by_broker(stream).await,
                "{flag}: an admitted connection stays"
            );
        }
        let mut extra = tokio::net::TcpStream::connect(&broker.address)
            .await
            .unwrap();
        assert!(
            closed_by_broker(&mut extra).await,
            "{flag}: the fourth is closed"
        );
        assert!(
            !answers(&broker).await,
            "{flag}: no room for a client either"
        );
        held.pop();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !answers(&broker).await {
            assert!(
                std::time::Instant::now() < deadline,
                "{flag}: the freed place is reused"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap();
    kib * 1024
}

/// queued.max.request.bytes bounds what half-sent large frames can make the broker hold:
/// 20 connections each send 15 MB of a 20 MB frame against a 64 MiB budget; the broker's
/// RSS grows by far less than the 300 MB they sent (only the frames that got a share are
/// read), a normal client is still answered, and the budget comes back when they go.
#[tokio::test]
async fn half_sent_large_frames_are_bounded_by_the_broker_wide_budget() {
    use tokio::io::AsyncWriteExt;
    let broker = BrokerProcess::start_with(
        2,
        &[
            "--queued-max-request-bytes",
            "67108864",
            "--partial-request-timeout-ms",
            "60000",
        ],
    );
    let before = rss_bytes(broker.pid());
    let frame_bytes: u32 = 20_000_000;
    let mut senders = Vec::new();
    for _ in 0..20 {
        let address = broker.address.clone();
        senders.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
            stream.write_all(&frame_bytes.to_be_bytes()).await.unwrap();
            let chunk = vec![7u8; 1 << 20];
            for _ in 0..15 {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            // Hold the connection with the frame unfinished.
            tokio::time::sleep(std::time::Duration::from_secs(120)).await;
        }));
    }
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let grown = rss_bytes(broker.pid()).saturating_sub(before);
    assert!(
        grown < 150 << 20,
        "RSS grew by {} MiB holding half-sent frames",
        grown >> 20
    );
    assert!(answers(&broker).await, "a normal client is still answered");
    for sender in &senders {
        sender.abort();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (ok, _, _) = broker.cli(&["topic", "create", "after"], "");
        if ok {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the budget came back");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (ok, _, err) = broker.cli(&["produce", "after"], "fits\n");
    assert!(ok, "{err}");
}

/// Committed offsets that cannot be read stop the start-up with one line naming the log and
/// the file, rather than starting with the group's offsets silently gone.
#[tokio::test]
async fn unreadable_committed_offsets_refuse_the_start_naming_the_file() {
    let mut broker = BrokerProcess::start(1);
    let (ok, _, err) = broker.cli(&["topic", "create", "orders"], "");
    assert!(ok, "{err}");
    broker.kill();
    let damaged = broker
        .data_dir()
        .join("__consumer_offsets-0")
        .join("log-start-offset");
    std::fs::write(&damaged, b"not an offset").unwrap();
    let started = broker::serve_expecting_failure(broker.data_dir());
    assert!(!started.status.success());
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert!(
        stderr.contains("cannot read the committed offsets in")
            && stderr.contains("__consumer_offsets-0")
            && stderr.contains("log-start-offset"),
        "{stderr}"
    );
    std::fs::remove_file(&damaged).unwrap();
    broker.kill_and_restart();
    let (ok, out, err) = broker.cli(&["topic", "list"], "");
    assert!(ok && out.contains("orders"), "{out}{err}");
}

/// A small ext4 file system on a loop device, unmounted and deleted when dropped.
struct LoopMount {
    dir: tempfile::TempDir,
    image: std::path::PathBuf,
}

impl LoopMount {
    fn new(bytes: u64) -> Result<LoopMount, String> {
        let run = |program: &str, args: &[&str]| -> Result<(), String> {
            let output = std::process::Command::new(program)
                .args(args)
                .output()
                .map_err(|error| format!("{program}: {error}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{program} {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                ))
            }
        };
        let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
        let image = dir.path().with_extension("ext4");
        std::fs::File::create(&image)
            .and_then(|file| file.set_len(bytes))
            .map_err(|error| error.to_string())?;
        let image_arg = image.to_str().unwrap().to_string();
        run("mkfs.ext4", &["-q", "-F", &image_arg])?;
        if let Err(why) = run(
            "mount",
            &["-o", "loop", &image_arg, dir.path().to_str().unwrap()],
        ) {
            let _ = std::fs::remove_file(&image);
            return Err(why);
        }
        Ok(LoopMount { dir, image })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
        let _ = std::fs::remove_file(&self.image);
    }
}

/// A full disk (ENOSPC on a small loop-mounted ext4): the partition stops taking writes,
/// Metadata reports it, every acknowledged record stays readable; once space is freed the
/// partition takes writes again without a restart, and nothing acknowledged was lost.
#[tokio::test]
async fn a_full_disk_keeps_acked_records_readable_and_recovers_when_space_returns() {
    let mount = match LoopMount::new(96 << 20) {
        Ok(mount) => mount,
        Err(why) => {
            eprintln!("skipping the full-disk test: cannot mount a loop ext4 image here ({why})");
            return;
        }
    };
    let filler = mount.path().join("filler");
    std::fs::write(&filler, vec![1u8; 40 << 20]).unwrap();
    let broker = BrokerProcess::start_in(&mount.path().join("data"), 1);
    let (ok, _, err) = broker.cli(&["topic", "create", "full"], "");
    assert!(ok, "{err}");
    let mut acked = Vec::new();
    let value = "v".repeat(1000);
    let mut refused = None;
    for round in 0..400 {
        let input: String = (0..500).map(|i| format!("{round}-{i} {value}\n")).collect();
        let (ok, out, err) = broker.cli(&["produce", "full", "-p", "0"], &input);
        if !ok {
            refused = Some(format!("{out}{err}"));
            break;
        }
        acked.extend((0..500).map(|i| format!("0:{round}-{i} {value}")));
    }
    let refused = refused.expect("the disk never filled up");
    assert!(!acked.is_empty(), "nothing fit: {refused}");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while partition_states(&broker, "full").await
        != [(0, protocol::ErrorCode::KafkaStorageError.code(), -1)]
    {
        assert!(
            std::time::Instant::now() < deadline,
            "Metadata never reported the full partition"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    acked.sort();
    assert_eq!(
        read_all(&broker, "full"),
        acked,
        "every acknowledged record is served"
    );

    std::fs::remove_file(&filler).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (ok, _, _) = broker.cli(&["produce", "full", "-p", "0"], "after room\n");
        if ok {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "writes never resumed after space returned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(partition_states(&broker, "full").await, [(0, 0, 0)]);
    acked.push("0:after room".to_string());
    acked.sort();
    assert_eq!(read_all(&broker, "full"), acked);
    drop(broker);
}

/// Descriptors the broker holds open on files under `dir`.
fn open_files_under(pid: u32, dir: &Path) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// Closed segments do not keep descriptors: a partition of hundreds of segments holds at
/// most the handle cache's worth open (128 a shard) however much of it is read, before and
/// after a restart, and every record reads back.
#[tokio::test]
async fn closed_segments_hold_a_bounded_number_of_open_files() {
    let mut broker = BrokerProcess::start(1);
    let (ok, _, err) = broker.cli(
        &["topic", "create", "many", "-c", "segment.bytes=16384"],
        "",
    );
    assert!(ok, "{err}");
    let value = "s".repeat(1000);
    let mut expected = Vec::new();
    for round in 0..8 {
        let input: String = (0..500).map(|i| format!("{round}-{i} {value}\n")).collect();
        let (ok, _, err) = broker.cli(
            &["produce", "many", "-p", "0", "--batch-records", "10"],
            &input,
        );
        assert!(ok, "{err}");
        expected.extend((0..500).map(|i| format!("0:{round}-{i} {value}")));
    }
    expected.sort();
    let dir = broker.data_dir().join("many-0");
    let segments = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count();
    assert!(segments >= 200, "{segments} segments");
    for round in [
        "after writing",
        "after reading everything",
        "after a restart and a read",
    ] {
        if round == "after a restart and a read" {
            broker.kill_and_restart();
        }
        if round != "after writing" {
            assert_eq!(read_all(&broker, "many"), expected, "{round}");
        }
        // An operation still in flight (a sync of the segment just sealed, a close) keeps
        // its descriptor a moment longer: the bound holds once they are done.
        let mut open = open_files_under(broker.pid(), &dir);
        for _ in 0..20 {
            if open <= 128 + 8 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            open = open_files_under(broker.pid(), &dir);
        }
        assert!(
            open <= 128 + 8,
            "{round}: {open} files open for {segments} segments"
        );
    }
}
