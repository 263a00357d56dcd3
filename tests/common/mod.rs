//! Shared harness for the end-to-end tests: real `cara` processes, real brokers and
//! real third-party clients (kcat, Python confluent-kafka, pyarrow, DuckDB).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `cara` binary under test.
pub fn cara() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cara"))
}

/// The repository's `tests/` directory.
pub fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests")
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Polls `check` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A child process killed when dropped; its stdout lines are collected.
pub struct Process {
    pub child: Child,
    pub name: String,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Process {
    pub fn spawn(name: &str, mut command: Command) -> Process {
        command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let label = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[{label}] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Process {
            child,
            name: name.to_owned(),
            lines,
        }
    }

    pub fn output_contains(&self, needle: &str) -> bool {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?} of SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        signal(self.child.id(), "KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(
        status.success() || sig == "KILL",
        "kill -{sig} {pid} failed"
    );
}

/// `cara broker` as a separate process on a free port; returns it and its bootstrap.
pub fn start_cara_broker() -> (Process, String) {
    start_cara_broker_with(None)
}

/// `cara broker` with a config file (for its `[embedded_broker]` section).
pub fn start_cara_broker_with(config: Option<&Path>) -> (Process, String) {
    // A port found free can be taken before the broker binds it, by another test's
    // outgoing connection (source ports come from the same range): the broker then
    // exits saying so (on stderr), and another port is tried.
    for _ in 0..5 {
        let bootstrap = format!("127.0.0.1:{}", free_port());
        let mut broker = spawn_cara_broker(&bootstrap, config);
        let mut exited = false;
        wait_until(Duration::from_secs(30), "cara broker to start", || {
            exited = matches!(broker.child.try_wait(), Ok(Some(_)));
            exited || broker.output_contains("Kafka bootstrap")
        });
        if !exited {
            return (broker, bootstrap);
        }
    }
    panic!("cara broker exited at start five times in a row (see its errors above)");
}

/// `cara broker` listening on `bootstrap` (to replace a broker on the same address).
pub fn start_cara_broker_at(bootstrap: &str, config: Option<&Path>) -> Process {
    let broker = spawn_cara_broker(bootstrap, config);
    wait_until(Duration::from_secs(30), "cara broker to start", || {
        broker.output_contains("Kafka bootstrap")
    });
    broker
}

fn spawn_cara_broker(bootstrap: &str, config: Option<&Path>) -> Process {
    let mut cmd = cara();
    cmd.args(["broker", "--listen", bootstrap]);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    Process::spawn("cara-broker", cmd)
}

/// Writes a config file for a test run.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("cara.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `cara run` against `brokers`, archiving to `archive`; waits until ready.
pub fn start_cara_run(brokers: &str, archive: &Path, config: &Path, group: &str) -> (Process, u16) {
    start_cara_run_with_env(brokers, archive, config, group, &[])
}

/// [`start_cara_run`] with environment variables `env` set for the process.
pub fn start_cara_run_with_env(
    brokers: &str,
    archive: &Path,
    config: &Path,
    group: &str,
    env: &[(&str, &str)],
) -> (Process, u16) {
    let http_port = free_port();
    let mut cmd = cara();
    cmd.args([
        "run",
        "--brokers",
        brokers,
        "--group",
        group,
        "--http",
        &format!("127.0.0.1:{http_port}"),
    ])
    .arg("--archive")
    .arg(archive)
    .arg("--config")
    .arg(config)
    .env("RUST_LOG", "warn")
    .envs(env.iter().copied());
    let run = Process::spawn("cara-run", cmd);
    wait_until(Duration::from_secs(60), "cara run to become ready", || {
        http_get(http_port, "/readyz").0 == 200
    });
    (run, http_port)
}

/// A bare HTTP/1.0 GET: (status, body). Status 0 when nothing answers.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    http_get_with(port, path, "")
}

/// A bare HTTP/1.0 GET with extra header lines (each ending in `\r\n`).
pub fn http_get_with(port: u16, path: &str, headers: &str) -> (u16, String) {
    http_request(port, "GET", path, headers, "")
}

/// A bare HTTP/1.0 POST of a JSON `body` with extra `headers`: (status, body).
pub fn http_post_json(port: u16, path: &str, headers: &str, body: &str) -> (u16, String) {
    let headers = format!(
        "{headers}Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    http_request(port, "POST", path, &headers, body)
}

fn http_request(port: u16, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
    if write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\n{headers}\r\n{body}"
    )
    .is_err()
    {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of a Prometheus sample (summing every label set of `name` matching `filter`).
pub fn metric_sum(port: u16, name: &str, filter: &str) -> f64 {
    let (_, body) = http_get(port, "/metrics");
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Rows archived to the tables that hold input records (`metrics`, `logs`,
/// `spans`, `dlq`). Derived tables (`alerts`, `metric_windows`, ...) grow
/// on their own schedule, so a wait on the total would end too early.
pub fn archived_input_rows(port: u16) -> f64 {
    ["metrics", "logs", "spans", "dlq"]
        .iter()
        .map(|t| metric_sum(port, "cara_archive_rows_total", &format!("table=\"{t}\"")))
        .sum()
}

/// Runs `cara sql --format csv` and returns the rows (without header).
pub fn sql_rows(archive: &Path, query: &str) -> Vec<String> {
    let out = cara()
        .args(["sql", "--format", "csv", "--archive"])
        .arg(archive)
        .arg(query)
        .output()
        .expect("cara sql");
    assert!(
        out.status.success(),
        "cara sql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

/// A single integer from `cara sql`.
pub fn sql_count(archive: &Path, query: &str) -> i64 {
    let rows = sql_rows(archive, query);
    rows.first()
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or_else(|| panic!("{query} returned {rows:?}"))
}

/// Runs a Python helper from `tests/clients`, failing clearly when its client is missing.
pub fn python(script: &str, args: &[&str]) -> Output {
    let out = Command::new("python3")
        .arg(tests_dir().join("clients").join(script))
        .args(args)
        .output()
        .expect("python3 is required for the end-to-end tests (.ci/run installs it)");
    assert!(
        out.status.success(),
        "{script} failed (install its clients with `pip install confluent-kafka pyarrow duckdb`, as .ci/run does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file under `dir`, recursively (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Opens `page` in headless chromium (tests/browser/screenshot.mjs, playwright-core),
/// saves a full-page screenshot to `screenshot` and returns what the page showed
/// (title, table ids, per SVG plot its size and shapes). Fails on any console error,
/// page error or failed request.
pub fn browser_screenshot(page: &Path, screenshot: &Path) -> serde_json::Value {
    let browser = tests_dir().join("browser");
    let out = Command::new("node")
        .arg(browser.join("screenshot.mjs"))
        .arg(page)
        .arg(screenshot)
        .output()
        .expect("node is required for the browser tests (.ci/run installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium found errors on {} (or could not start: install chromium and run `npm ci --prefix {}`, as .ci/run does):\n{stdout}\n{}",
        page.display(),
        browser.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Produces each line of `lines` as one message with kcat.
pub fn kcat_produce(brokers: &str, topic: &str, lines: &[String]) {
    kcat_produce_with(brokers, topic, &[], lines.iter().cloned());
}

/// Produces each line of `lines` as one message into `partition` with kcat.
pub fn kcat_produce_to_partition(brokers: &str, topic: &str, partition: i32, lines: &[String]) {
    let partition = partition.to_string();
    kcat_produce_with(brokers, topic, &["-p", &partition], lines.iter().cloned());
}

/// Produces `(key, value)` messages with kcat, so that equal keys share a partition.
pub fn kcat_produce_keyed(brokers: &str, topic: &str, messages: &[(String, String)]) {
    let lines = messages.iter().map(|(k, v)| format!("{k}\t{v}"));
    kcat_produce_with(brokers, topic, &["-K", "\t"], lines);
}

/// kcat's producer with `args`, one message per line.
fn kcat_produce_with(
    brokers: &str,
    topic: &str,
    args: &[&str],
    lines: impl Iterator<Item = String>,
) {
    let mut child = Command::new("kcat")
        .args(["-P", "-b", brokers, "-t", topic])
        .args(args)
        .args(["-X", "enable.idempotence=true"])
        .stdin(Stdio::piped())
        .spawn()
        .expect(
            "kcat is required for the end-to-end tests (apt-get install kcat; .ci/run installs it)",
        );
    {
        let stdin = child.stdin.as_mut().unwrap();
        for line in lines {
            writeln!(stdin, "{line}").unwrap();
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "kcat failed");
}

/// A topic read with kcat from the beginning to the end, each message formatted
/// with `format` (kcat's `-f`).
fn kcat_consume(brokers: &str, topic: &str, format: &str) -> String {
    let out = Command::new("kcat")
        .args([
            "-C",
            "-b",
            brokers,
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
        ])
        .args(["-f", format])
        .output()
        .expect("kcat");
    assert!(
        out.status.success(),
        "kcat -C failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every message of a topic as (key, value) (values must be single-line text, as
/// cara's JSON records are).
pub fn kcat_messages(brokers: &str, topic: &str) -> Vec<(String, String)> {
    kcat_consume(brokers, topic, "%k\t%s\n")
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Every message key of a topic.
pub fn kcat_keys(brokers: &str, topic: &str) -> Vec<String> {
    kcat_consume(brokers, topic, "%k\n")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The operator state each metrics partition's checkpoint restores from (read from
/// the state file it names), by partition; asserts that the checkpoint's file is the
/// partition's only state file (replaced ones are cleaned up).
pub fn operator_states(archive: &Path) -> Vec<(i32, Vec<u8>)> {
    use cara_pipeline::archive::{commit, layout::ArchiveLayout, state};
    let layout = ArchiveLayout::new(archive);
    let topic = "telemetry.metrics";
    let mut out = Vec::new();
    for partition in 0..64 {
        let Some(checkpoint) = commit::read_checkpoint(&layout, topic, partition).unwrap() else {
            continue;
        };
        let Some(file) = checkpoint.state else {
            out.push((partition, Vec::new()));
            continue;
        };
        let kept: Vec<String> = std::fs::read_dir(layout.state_dir(topic, partition))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            kept,
            vec![file.name.clone()],
            "state files of partition {partition}"
        );
        out.push((
            partition,
            state::read_state(&layout, topic, partition, &file).unwrap(),
        ));
    }
    out
}

/// The tansu binary: `$TANSU`, else `~/.cargo/bin/tansu`, else on the PATH.
pub fn tansu_binary() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("TANSU") {
        return std::path::PathBuf::from(path);
    }
    let in_cargo_home = std::env::var("HOME")
        .map(|h| std::path::PathBuf::from(h).join(".cargo/bin/tansu"))
        .unwrap_or_default();
    if in_cargo_home.exists() {
        return in_cargo_home;
    }
    std::path::PathBuf::from("tansu")
}

/// tansu (a Kafka-compatible broker that is not ours) on a free port, in memory;
/// its process and bootstrap address.
pub fn start_tansu(dir: &std::path::Path) -> (Process, String) {
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut cmd = std::process::Command::new(tansu_binary());
    cmd.args([
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &url,
        "--storage-engine",
        "memory://tansu/",
    ])
    .current_dir(dir)
    .env("RUST_LOG", "warn");
    let tansu = Process::spawn("tansu", cmd);
    wait_until(Duration::from_secs(30), "tansu to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (tansu, format!("127.0.0.1:{port}"))
}
