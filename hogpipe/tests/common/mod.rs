//! Shared helpers of the end-to-end tests (`sdk.rs`, `crash.rs`): run `hogpipe serve` as a child
//! process, talk plain HTTP/1.1 to it, stop it (SIGTERM) or kill it (SIGKILL), and read its event
//! log once it has stopped. Every process started here is killed when its guard drops, so a
//! failing test leaves nothing running.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hogpipe_capture::event::CapturedEvent;
use hogpipe_capture::log::wal::{Wal, WalConfig};

/// Generous limit for anything that should take well under a second; only there to turn a hang
/// into a failure.
pub const HANG: Duration = Duration::from_secs(120);

/// The repository root.
pub fn repo_root() -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("..")
}

/// A directory under the system temp dir, removed when dropped (kept when `HOGPIPE_KEEP_TEST_DATA`
/// is set, to look at after a failure).
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory named after `name`.
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("hogpipe-e2e-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("HOGPIPE_KEEP_TEST_DATA").is_some() {
            eprintln!("keeping test data in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Writes a `hogpipe.toml` with one project per `(id, token)` and `extra` appended; returns its path.
pub fn write_config(dir: &Path, projects: &[(u64, &str)], extra: &str) -> PathBuf {
    let mut text = String::new();
    for (id, token) in projects {
        text.push_str(&format!("[[projects]]\nid = {id}\ntoken = \"{token}\"\n\n"));
    }
    text.push_str(extra);
    let path = dir.join("hogpipe.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// A running `hogpipe serve`. Dropping it kills the process.
pub struct Server {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts `hogpipe serve --config CONFIG --data-dir DATA_DIR --port 0 --host 127.0.0.1` and
    /// waits until it prints the address it listens on. Panics with its output if it exits first.
    pub fn start(config: &Path, data_dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hogpipe"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--port", "0", "--host", "127.0.0.1"])
            .env("HOGPIPE_LOG", std::env::var("HOGPIPE_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", env!("CARGO_BIN_EXE_hogpipe")));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr is piped");
        let collected = stderr.clone();
        // Keeps draining stderr for the life of the process so the pipe never fills up.
        let stderr_reader = std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                {
                    let mut all = collected.lock().unwrap_or_else(|e| e.into_inner());
                    all.push_str(&line);
                    all.push('\n');
                }
                if let Some(rest) = line.strip_prefix("hogpipe: capture listening on http://") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.trim().to_string());
                    }
                }
            }
        });
        let mut server = Server {
            child: Some(child),
            addr: ([0, 0, 0, 0], 0).into(),
            data_dir: data_dir.to_path_buf(),
            stderr,
            stderr_reader: Some(stderr_reader),
        };
        match rx.recv_timeout(HANG) {
            Ok(addr) => {
                server.addr = addr.parse().unwrap_or_else(|e| panic!("bad listen address {addr:?}: {e}"));
                server
            }
            Err(_) => {
                let status = server.kill();
                panic!("hogpipe serve did not start ({status}); its output:\n{}", server.output());
            }
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything the server wrote on stderr so far.
    pub fn output(&self) -> String {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM, then waits for a graceful exit, which must be status 0.
    pub fn stop(mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SAFETY: kill(2) on our own child's pid; it has not been waited for, so the pid is ours.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "cannot send SIGTERM to hogpipe: {}", std::io::Error::last_os_error());
        let status = wait_timeout(&mut child, HANG);
        self.join_stderr();
        match status {
            Some(s) if s.success() => {}
            Some(s) => panic!("hogpipe serve exited with {s} after SIGTERM; its output:\n{}", self.output()),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("hogpipe serve did not stop within {HANG:?} of SIGTERM; its output:\n{}", self.output());
            }
        }
    }

    /// SIGKILL (no chance to flush or clean up), then reaps the process.
    pub fn kill(&mut self) -> String {
        let Some(mut child) = self.child.take() else { return "already stopped".into() };
        let _ = child.kill();
        let status = child.wait().map_or_else(|e| format!("wait failed: {e}"), |s| s.to_string());
        self.join_stderr();
        status
    }

    fn join_stderr(&mut self) {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("hogpipe serve output:\n{}", self.output());
            }
        }
    }
}

/// Waits for `child` up to `limit`; `None` if it is still running.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => return None,
            Err(e) => panic!("cannot wait for child process {}: {e}", child.id()),
        }
    }
}

/// What a finished command printed.
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `command` to completion with stdout and stderr captured; kills it and panics if it runs
/// longer than `limit` (or if the test panics meanwhile).
pub fn run_with_timeout(command: &mut Command, limit: Duration) -> Output {
    struct Guard(Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let what = format!("{command:?}");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let mut guard = Guard(child);
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(pipe) = pipe {
                #[allow(clippy::disallowed_methods)] // bounded by `take`
                let _ = pipe.take(64 << 20).read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = drain(guard.0.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(guard.0.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let Some(status) = wait_timeout(&mut guard.0, limit) else {
        let _ = guard.0.kill();
        let _ = guard.0.wait();
        let err = stderr.join().unwrap_or_default();
        panic!("{what} did not finish within {limit:?}; its stderr:\n{err}");
    };
    Output { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client over one keep-alive connection. It never retries: a request that
/// fails (connection reset, no answer) is an `Err`, so the caller knows it was not acknowledged.
pub struct Http {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Http {
    /// A client for `addr`; it connects on the first request.
    pub fn new(addr: SocketAddr) -> Http {
        Http { addr, conn: None }
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&mut self, path: &str, body: &[u8]) -> std::io::Result<Response> {
        self.request("POST", path, &[("Content-Type", "application/json")], body)
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> std::io::Result<Response> {
        self.request("GET", path, &[], b"")
    }

    /// Sends one request and reads its response. On any error the connection is dropped.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let result = self.exchange(method, path, headers, body);
        match &result {
            Ok(r) if r.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) => self.conn = None,
            Ok(_) => {}
            Err(_) => self.conn = None,
        }
        result
    }

    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        if self.conn.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, HANG)?;
            stream.set_read_timeout(Some(HANG))?;
            stream.set_write_timeout(Some(HANG))?;
            stream.set_nodelay(true)?;
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().expect("connected above");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n", self.addr, body.len());
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let stream = conn.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        stream.flush()?;
        read_response(conn)
    }
}

fn bad(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

fn read_line(conn: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection"));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_response(conn: &mut BufReader<TcpStream>) -> std::io::Result<Response> {
    let status_line = read_line(conn)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(conn)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let size_line = read_line(conn)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                while !read_line(conn)?.is_empty() {}
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            conn.read_exact(&mut body[start..])?;
            read_line(conn)?;
        }
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().map_err(|_| bad(format!("bad content-length {len:?}")))?;
        body.resize(len, 0);
        conn.read_exact(&mut body)?;
    } else if status >= 200 && status != 204 && status != 304 {
        #[allow(clippy::disallowed_methods)] // bounded by `take`
        conn.take(64 << 20).read_to_end(&mut body)?;
    }
    Ok(Response { status, headers, body })
}

/// Opens the stopped server's event log (`DATA_DIR/log`, 8 partitions as `serve` creates it) and
/// returns every record, each parsed as a captured event. Panics naming the partition and offset
/// of any record that cannot be read or parsed: a corrupt log fails the test.
pub fn read_log(data_dir: &Path) -> Vec<CapturedEvent> {
    let dir = data_dir.join("log");
    let wal = Wal::open(WalConfig::new(&dir))
        .unwrap_or_else(|e| panic!("cannot open the event log in {}: {e}", dir.display()));
    let mut events = Vec::new();
    for p in 0..wal.partitions() {
        let records = wal
            .read(p, 0, usize::MAX)
            .unwrap_or_else(|e| panic!("cannot read partition {p} of {}: {e}", dir.display()));
        let mut expected_offset = wal.start_offset(p);
        for r in records {
            assert_eq!(r.offset, expected_offset, "partition {p}: offsets are not dense");
            expected_offset += 1;
            let event = CapturedEvent::from_json(&r.value).unwrap_or_else(|e| {
                panic!(
                    "partition {p} offset {}: not a captured event ({e}): {}",
                    r.offset,
                    String::from_utf8_lossy(&r.value)
                )
            });
            assert_eq!(
                r.key,
                event.key().into_bytes(),
                "partition {p} offset {}: key is not token:distinct_id",
                r.offset
            );
            events.push(event);
        }
        assert_eq!(expected_offset, wal.end_offset(p), "partition {p}: read stopped before the end");
    }
    events
}

/// Groups events by uuid.
pub fn by_uuid(events: &[CapturedEvent]) -> HashMap<&str, Vec<&CapturedEvent>> {
    let mut map: HashMap<&str, Vec<&CapturedEvent>> = HashMap::new();
    for e in events {
        map.entry(e.uuid.as_str()).or_default().push(e);
    }
    map
}

/// Parses `/metrics` text into `name{labels}` → value.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// A throwaway ClickHouse server (Debian's, 18.16) started by `scripts/clickhouse.sh`; stopped on drop.
pub struct ClickHouse {
    dir: TempDir,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl ClickHouse {
    /// Starts one server on free ports.
    pub fn start(name: &str) -> ClickHouse {
        let dir = TempDir::new(&format!("clickhouse-{name}"));
        let free =
            || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap();
        let (http, tcp) = (free(), free());
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/clickhouse.sh"))
            .arg("start")
            .arg(dir.path())
            .arg(http.to_string())
            .arg(tcp.to_string())
            .output()
            .expect("run scripts/clickhouse.sh");
        assert!(out.status.success(), "scripts/clickhouse.sh start failed: {}", String::from_utf8_lossy(&out.stderr));
        ClickHouse { url: String::from_utf8_lossy(&out.stdout).trim().to_string(), dir }
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/clickhouse.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// Runs `hogpipe query` with this config and data dir; returns `{columns, types, results}`.
pub fn query(config: &Path, data_dir: &Path, sql: &str) -> serde_json::Value {
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_hogpipe"))
            .arg("query")
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .arg(sql),
        HANG,
    );
    assert!(out.status.success(), "hogpipe query {sql:?} failed: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("hogpipe query printed no JSON ({e}): {}", out.stdout))
}
