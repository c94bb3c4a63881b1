//! `hogpipe bench capture`: a load generator for the capture endpoints.
//!
//! Without `--url` it starts its own `hogpipe serve` (a child process on a free loopback port,
//! temp data dir, embedded WAL with fsync) and reports the server's peak memory too. The client is
//! a minimal HTTP/1.1 keep-alive client on one thread, so it takes as little CPU from the server
//! as possible on a small machine.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Options of `hogpipe bench capture`.
#[derive(Args, Debug)]
pub struct CaptureBenchArgs {
    /// A running capture server (`http://host:port`); default: start one.
    #[arg(long)]
    url: Option<String>,
    /// Project token to send (required with --url; generated otherwise).
    #[arg(long)]
    token: Option<String>,
    /// What to send: batches to `/batch`, single events to `/i/v0/e`, or both one after the other.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,
    /// Seconds per mode.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Concurrent connections for batches.
    #[arg(long, default_value_t = 32)]
    batch_connections: usize,
    /// Concurrent connections for single events.
    #[arg(long, default_value_t = 64)]
    single_connections: usize,
    /// Events per batch.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Keep the dataflow running in the started server (by default it is off, to measure capture alone).
    #[arg(long)]
    with_dataflow: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Batch,
    Single,
    Both,
}

/// One mode's outcome.
#[derive(Debug, Default)]
struct Outcome {
    name: &'static str,
    connections: usize,
    seconds: f64,
    ok: u64,
    failed: u64,
    statuses: std::collections::BTreeMap<u16, u64>,
    events: u64,
    bytes: u64,
    latencies_us: Vec<u32>,
    rss_start_kib: Option<u64>,
    rss_max_kib: Option<u64>,
}

impl Outcome {
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// Kills the server child when the bench ends, however it ends.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first so the log is closed cleanly; SIGKILL if it does not stop.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_server(token: &str, with_dataflow: bool) -> Result<(Server, String)> {
    let dir = std::env::temp_dir().join(format!("hogpipe-bench-capture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("hogpipe.toml");
    let dataflow = if with_dataflow { "" } else { "[dataflow]\nenabled = false\n" };
    std::fs::write(&config, format!("{dataflow}[[projects]]\nid = 1\ntoken = \"{token}\"\n"))?;
    let exe = std::env::current_exe().context("cannot find the hogpipe executable")?;
    let mut child = Command::new(exe)
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("HOGPIPE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start `hogpipe serve`")?;
    let stderr = child.stderr.take().context("no stderr from the server")?;
    let mut lines = BufReader::new(stderr).lines();
    let server = Server { child, dir };
    let mut address = None;
    for line in lines.by_ref() {
        let line = line?;
        if let Some(addr) = line.strip_prefix("hogpipe: capture listening on http://") {
            address = Some(addr.trim().to_string());
            break;
        }
    }
    let Some(address) = address else { bail!("the server exited before listening") };
    // Keep draining the server's stderr so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok((server, address))
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A realistic posthog-js `$pageview` (about 400 bytes of JSON).
fn event_json(i: usize) -> serde_json::Value {
    serde_json::json!({
        "event": "$pageview",
        "distinct_id": format!("user-{}", i % 5000),
        "timestamp": "2026-11-25T10:00:00.000Z",
        "properties": {
            "$current_url": format!("https://example.com/p/{}", i % 100),
            "$host": "example.com",
            "$pathname": format!("/p/{}", i % 100),
            "$browser": "Chrome",
            "$browser_version": 131,
            "$os": "Mac OS X",
            "$device_type": "Desktop",
            "$screen_width": 1920,
            "$lib": "web",
            "$lib_version": "1.200.0",
            "$session_id": format!("0193{:012x}", i % 700),
            "email": format!("user{}@example.com", i % 5000)
        }
    })
}

fn request_bytes(path: &str, host: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Reads one HTTP/1.1 response; returns its status.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).context("response head is not UTF-8")?;
            let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).context("no status in the response")?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    bail!("connection closed mid-response");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(status);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

struct Worker {
    ok: u64,
    failed: u64,
    statuses: std::collections::BTreeMap<u16, u64>,
    latencies_us: Vec<u32>,
}

async fn connection(address: String, requests: std::sync::Arc<Vec<Vec<u8>>>, offset: usize, until: Instant) -> Worker {
    let mut w = Worker { ok: 0, failed: 0, statuses: Default::default(), latencies_us: Vec::new() };
    let mut buf = Vec::with_capacity(4096);
    let mut i = offset;
    'reconnect: while Instant::now() < until {
        let Ok(mut stream) = TcpStream::connect(&address).await else {
            w.failed += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        while Instant::now() < until {
            let req = &requests[i % requests.len()];
            i += 1;
            let started = Instant::now();
            if stream.write_all(req).await.is_err() {
                w.failed += 1;
                continue 'reconnect;
            }
            match read_response(&mut stream, &mut buf).await {
                Ok(status) => {
                    let us = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
                    *w.statuses.entry(status).or_default() += 1;
                    if status == 200 {
                        w.ok += 1;
                        w.latencies_us.push(us);
                    } else {
                        w.failed += 1;
                    }
                }
                Err(_) => {
                    w.failed += 1;
                    continue 'reconnect;
                }
            }
        }
    }
    w
}

fn run_mode(
    name: &'static str,
    address: &str,
    requests: Vec<Vec<u8>>,
    events_per_request: usize,
    connections: usize,
    seconds: f64,
    server_pid: Option<u32>,
) -> Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let bytes_per_request = requests.iter().map(Vec::len).sum::<usize>() / requests.len().max(1);
    let requests = std::sync::Arc::new(requests);
    let rss_start = server_pid.and_then(|p| rss_kib(p, "VmRSS:"));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let sampler_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = server_pid.map(|pid| {
        let stop = sampler_stop.clone();
        std::thread::spawn(move || {
            let mut max = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(rss_kib(pid, "VmRSS:").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            max
        })
    });
    let workers = runtime.block_on(async {
        let mut handles = Vec::new();
        for c in 0..connections {
            handles.push(tokio::spawn(connection(address.to_string(), requests.clone(), c * 7, until)));
        }
        let mut out = Vec::new();
        for h in handles {
            if let Ok(w) = h.await {
                out.push(w);
            }
        }
        out
    });
    let elapsed = started.elapsed().as_secs_f64();
    sampler_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rss_max = sampler.and_then(|h| h.join().ok());
    let mut outcome = Outcome {
        name,
        connections,
        seconds: elapsed,
        rss_start_kib: rss_start,
        rss_max_kib: rss_max,
        ..Default::default()
    };
    for w in workers {
        outcome.ok += w.ok;
        outcome.failed += w.failed;
        for (s, n) in w.statuses {
            *outcome.statuses.entry(s).or_default() += n;
        }
        outcome.latencies_us.extend(w.latencies_us);
    }
    outcome.events = outcome.ok * events_per_request as u64;
    outcome.bytes = outcome.ok * bytes_per_request as u64;
    outcome.latencies_us.sort_unstable();
    Ok(outcome)
}

/// Runs the benchmark.
pub fn run(args: CaptureBenchArgs) -> Result<()> {
    if !args.seconds.is_finite() || args.seconds <= 0.0 {
        bail!("--seconds must be a positive number, got {}", args.seconds);
    }
    if args.batch_size == 0 || args.batch_connections == 0 || args.single_connections == 0 {
        bail!("--batch-size and the connection counts must be at least 1");
    }
    let (server, address, token) = match &args.url {
        Some(url) => {
            let token = args.token.clone().context("--url needs --token (a project token the server knows)")?;
            let address = url.trim_start_matches("http://").trim_end_matches('/').to_string();
            (None, address, token)
        }
        None => {
            let token = crate::config::random_secret("phc_");
            let (server, address) = start_server(&token, args.with_dataflow)?;
            (Some(server), address, token)
        }
    };
    let pid = server.as_ref().map(|s| s.child.id());
    if !args.json {
        eprintln!(
            "capture at http://{address}{}",
            if server.is_some() { " (started for this run: embedded WAL, fsync on)" } else { "" }
        );
    }
    let mut outcomes = Vec::new();
    if matches!(args.mode, Mode::Batch | Mode::Both) {
        let requests: Vec<Vec<u8>> = (0..64)
            .map(|r| {
                let batch: Vec<_> = (0..args.batch_size).map(|i| event_json(r * args.batch_size + i)).collect();
                let body = serde_json::json!({"api_key": token, "batch": batch}).to_string();
                request_bytes("/batch/", &address, body.as_bytes())
            })
            .collect();
        if !args.json {
            eprintln!(
                "batches of {} events, {} connections, {} s …",
                args.batch_size, args.batch_connections, args.seconds
            );
        }
        outcomes.push(run_mode(
            "batch",
            &address,
            requests,
            args.batch_size,
            args.batch_connections,
            args.seconds,
            pid,
        )?);
    }
    if matches!(args.mode, Mode::Single | Mode::Both) {
        let requests: Vec<Vec<u8>> = (0..1024)
            .map(|i| {
                let mut event = event_json(i);
                event["api_key"] = serde_json::json!(token);
                request_bytes("/i/v0/e/", &address, event.to_string().as_bytes())
            })
            .collect();
        if !args.json {
            eprintln!("single events, {} connections, {} s …", args.single_connections, args.seconds);
        }
        outcomes.push(run_mode("single", &address, requests, 1, args.single_connections, args.seconds, pid)?);
    }
    let peak = pid.and_then(|p| rss_kib(p, "VmHWM:"));
    print(&outcomes, peak, args.json);
    drop(server);
    Ok(())
}

fn print(outcomes: &[Outcome], peak_kib: Option<u64>, json: bool) {
    if json {
        let mut out = serde_json::Map::new();
        for o in outcomes {
            out.insert(
                o.name.into(),
                serde_json::json!({
                    "connections": o.connections,
                    "seconds": o.seconds,
                    "requests_ok": o.ok,
                    "requests_failed": o.failed,
                    "statuses": o.statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<std::collections::BTreeMap<_, _>>(),
                    "requests_per_second": o.ok as f64 / o.seconds,
                    "events_per_second": o.events as f64 / o.seconds,
                    "mb_per_second": o.bytes as f64 / o.seconds / 1e6,
                    "p50_ms": o.percentile_ms(0.5),
                    "p99_ms": o.percentile_ms(0.99),
                    "p999_ms": o.percentile_ms(0.999),
                    "server_rss_start_kib": o.rss_start_kib,
                    "server_rss_max_kib": o.rss_max_kib,
                }),
            );
        }
        out.insert("server_peak_rss_kib".into(), serde_json::json!(peak_kib));
        println!("{}", serde_json::Value::Object(out));
        return;
    }
    println!(
        "{:<7} {:>5} {:>10} {:>12} {:>8} {:>8} {:>8} {:>8} {:>9} {:>16}",
        "mode", "conns", "req/s", "events/s", "MB/s", "p50 ms", "p99 ms", "p999 ms", "failed", "server RSS MiB"
    );
    for o in outcomes {
        let rss = match (o.rss_start_kib, o.rss_max_kib) {
            (Some(a), Some(b)) => format!("{:.0} → {:.0}", a as f64 / 1024.0, b as f64 / 1024.0),
            _ => "-".into(),
        };
        println!(
            "{:<7} {:>5} {:>10.0} {:>12.0} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>9} {:>16}",
            o.name,
            o.connections,
            o.ok as f64 / o.seconds,
            o.events as f64 / o.seconds,
            o.bytes as f64 / o.seconds / 1e6,
            o.percentile_ms(0.5),
            o.percentile_ms(0.99),
            o.percentile_ms(0.999),
            o.failed,
            rss
        );
        if o.failed > 0 {
            println!("        statuses: {:?}", o.statuses);
        }
    }
    if let Some(peak) = peak_kib {
        println!("server peak RSS: {:.0} MiB", peak as f64 / 1024.0);
    }
}
