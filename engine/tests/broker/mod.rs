//! A real `ringlog serve` process for client tests: started on a free port with its own
//! data directory, killed (SIGKILL) when dropped, restartable on the same port and data.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct BrokerProcess {
    child: Option<Child>,
    pub address: String,
    data_dir: PathBuf,
    cores: usize,
    flags: Vec<String>,
    /// RLIMIT_NOFILE (soft and hard) the broker runs with, when set.
    open_files: Option<u64>,
    _temp: Option<tempfile::TempDir>,
}

impl BrokerProcess {
    /// Starts a broker with `cores` shards on a fresh data directory.
    pub fn start(cores: usize) -> BrokerProcess {
        BrokerProcess::launch(cores, &[], None)
    }

    /// Starts a broker whose open files limit (soft and hard) is `open_files`, also when it
    /// is restarted.
    pub fn start_with_open_files(cores: usize, open_files: u64) -> BrokerProcess {
        BrokerProcess::launch(cores, &[], Some(open_files))
    }

    /// Starts a broker with extra `serve` flags.
    pub fn start_with(cores: usize, flags: &[&str]) -> BrokerProcess {
        BrokerProcess::launch(cores, flags, None)
    }

    /// Starts a broker on `data_dir` (which the caller keeps).
    pub fn start_in(data_dir: &Path, cores: usize) -> BrokerProcess {
        BrokerProcess::launch_in(data_dir.to_path_buf(), None, cores, &[], None)
    }

    fn launch(cores: usize, flags: &[&str], open_files: Option<u64>) -> BrokerProcess {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        BrokerProcess::launch_in(data_dir, Some(temp), cores, flags, open_files)
    }

    fn launch_in(
        data_dir: PathBuf,
        temp: Option<tempfile::TempDir>,
        cores: usize,
        flags: &[&str],
        open_files: Option<u64>,
    ) -> BrokerProcess {
        let (child, address) = spawn(&data_dir, "127.0.0.1:0", cores, flags, open_files);
        BrokerProcess {
            child: Some(child),
            address,
            data_dir,
            cores,
            flags: flags.iter().map(|flag| flag.to_string()).collect(),
            open_files,
            _temp: temp,
        }
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker running").id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// kill -9, then start again on the same address, data directory and flags.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        let (child, address) = spawn(
            &self.data_dir,
            &self.address,
            self.cores,
            &flags,
            self.open_files,
        );
        assert_eq!(address, self.address);
        self.child = Some(child);
    }

    /// kill -9, then start again with `cores` shards (same address, data and flags).
    pub fn kill_and_restart_with_cores(&mut self, cores: usize) {
        self.cores = cores;
        self.kill_and_restart();
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            wait_until_unbound(&self.address);
        }
    }

    /// Runs the `ringlog` CLI against this broker; returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str], stdin: &str) -> (bool, String, String) {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringlog"))
            .arg("-b")
            .arg(&self.address)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ringlog cli");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let output = child.wait_with_output().expect("cli output");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

/// A librdkafka consumer bootstrapped at `address`, assigned to every partition of `topic`
/// from the beginning (no group).
pub fn consumer_from_beginning(
    address: &str,
    topic: &str,
    partitions: i32,
) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", address)
        .set("enable.auto.commit", "false")
        .set("group.id", "unused-no-subscribe")
        .create()
        .expect("consumer");
    let mut assignment = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// A loopback address whose port was free a moment ago (for `--metrics-listen`).
pub fn free_local_address() -> String {
    free_local_addresses(1).remove(0)
}

/// `count` distinct free loopback addresses: each port stays bound until all are chosen, so
/// none is given twice.
pub fn free_local_addresses(count: usize) -> Vec<String> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|listener| format!("127.0.0.1:{}", listener.local_addr().unwrap().port()))
        .collect()
}

/// The Prometheus text a broker serves at `address` (its `--metrics-listen`), headers
/// included.
pub async fn scrape_metrics(address: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("metrics port");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

/// Runs `ringlog serve` on `data_dir` (one shard, any port) to its end, for a start-up that
/// must fail: its output.
pub fn serve_expecting_failure(data_dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ringlog"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--cores", "1", "--no-pin"])
        .env("RINGLOG_LOG", "warn")
        .output()
        .expect("run ringlog serve")
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until nothing listens on `address` any more. A killed broker's listening sockets
/// can outlive its process for a moment (io_uring tears a ring down, and lets go of the
/// files its operations hold, after the process is reaped); a new broker binding the port
/// meanwhile shares it through SO_REUSEPORT, and a connection the kernel hands to the old
/// socket is reset when that socket closes. A bind without SO_REUSEPORT succeeds only once
/// every socket on the port is gone.
fn wait_until_unbound(address: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpListener::bind(address).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(
    data_dir: &Path,
    listen: &str,
    cores: usize,
    flags: &[&str],
    open_files: Option<u64>,
) -> (Child, String) {
    use std::os::unix::process::CommandExt;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringlog"));
        if let Some(limit) = open_files {
            let limit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: only setrlimit runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(listen)
            .arg("--cores")
            .arg(cores.to_string())
            .arg("--no-pin")
            .args(flags)
            .env("RINGLOG_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ringlog serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        if let Some(address) = line.trim().strip_prefix("ringlog listening on ") {
            return (child, address.to_string());
        }
        // The port may still be held by the process just killed: retry briefly.
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            Instant::now() < deadline,
            "ringlog serve did not start: {line:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
