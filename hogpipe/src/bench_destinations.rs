//! `hogpipe bench destinations`: the delivery engine against an in-process keep-alive HTTP server.
//!
//! Three runs: (1) throughput, N jobs enqueued in batches as fast as the engine takes them;
//! (2) added latency (enqueue call → final `resume`) at a fixed rate; (3) one destination whose
//! server never answers while another delivers at a fixed rate, with the process's RSS sampled
//! before and after. The jobs and the `Resume` are parameters ([`run_with`]), so the webhook
//! template's invoker can replace the trivial ones: [`Timed`] carries each job's sequence number
//! in front of the opaque state, so any `Resume` works unchanged.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use hogpipe_destinations::engine::{DestinationSettings, Engine, EngineConfig, Job};
use hogpipe_destinations::http::{HttpRequest, HttpResponse, Next, Resume};
use hogpipe_destinations::secret_key::SecretKey;

/// Options of `hogpipe bench destinations`.
#[derive(Args, Debug)]
pub struct DestinationsBenchArgs {
    /// Jobs in the throughput run.
    #[arg(long, default_value_t = 200_000)]
    jobs: usize,
    /// Jobs per `enqueue` call (one transaction each), as the dataflow batches them.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Destinations (function ids) the jobs are spread over.
    #[arg(long, default_value_t = 4)]
    destinations: usize,
    /// Requests in flight per destination.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Jobs per second in the latency run and in the stalled run.
    #[arg(long, default_value_t = 5000)]
    rate: usize,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 3.0)]
    latency_seconds: f64,
    /// Seconds of the stalled run (whole seconds).
    #[arg(long, default_value_t = 10.0)]
    stall_seconds: f64,
    /// Threads calling `enqueue` at once in the throughput run (the dataflow's workers).
    #[arg(long, default_value_t = 2)]
    producers: usize,
    /// Threads of the engine's runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Run every job through a real destination made from this template (`template-webhook`):
    /// each job is a Hog invocation started on an event, suspended on `fetch`, and resumed with
    /// the answer. Without it, jobs are prepared requests with a trivial resume (the engine alone).
    #[arg(long)]
    template: Option<String>,
}

/// Pending jobs the benchmark lets the engine hold on disk.
const MAX_PENDING: u64 = 1_000_000;

/// Makes job number `seq` for `function_id`, whose server listens at `base_url`.
pub type JobMaker = Arc<dyn Fn(usize, &str, &str) -> Job + Send + Sync>;

/// Answers every response with "done".
struct Trivial;

impl Resume for Trivial {
    fn resume(&self, _state: &[u8], _response: &HttpResponse) -> Next {
        Next::Done { logs: Vec::new() }
    }
}

/// A webhook-sized job: a JSON event of about 400 bytes.
fn trivial_job(seq: usize, function_id: &str, base_url: &str) -> Job {
    let body = format!(
        "{{\"event\":\"$pageview\",\"distinct_id\":\"user-{}\",\"uuid\":\"0192d0c1-0000-7000-8000-{seq:012x}\",\
         \"properties\":{{\"$current_url\":\"https://example.com/p/{}\",\"$browser\":\"Chrome\",\"$os\":\"Mac OS X\",\
         \"$lib\":\"web\",\"plan\":\"pro\",\"email\":\"user{}@example.com\"}},\"timestamp\":\"2026-01-01T00:00:00Z\"}}",
        seq % 10_000,
        seq % 9,
        seq % 10_000
    );
    Job {
        function_id: function_id.to_string(),
        team_id: 1,
        request: HttpRequest {
            method: "POST".into(),
            url: format!("{base_url}/hook"),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(body),
        },
        state: vec![0; 64],
    }
}

/// Wraps a `Resume`: the state's first 8 bytes are the job's sequence number; the final resume
/// (one that does not ask for another fetch) records when it happened.
pub struct Timed {
    inner: Arc<dyn Resume>,
    start: Instant,
    enqueued: Vec<AtomicU64>,
    finished: Vec<AtomicU64>,
    done: AtomicUsize,
}

impl Timed {
    fn new(inner: Arc<dyn Resume>, capacity: usize) -> Timed {
        Timed {
            inner,
            start: Instant::now(),
            enqueued: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            finished: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            done: AtomicUsize::new(0),
        }
    }

    fn nanos(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn wrap(&self, seq: usize, mut job: Job) -> Job {
        let mut state = Vec::with_capacity(8 + job.state.len());
        state.extend_from_slice(&(seq as u64).to_le_bytes());
        state.extend_from_slice(&job.state);
        job.state = state;
        job
    }

    fn mark_enqueued(&self, seqs: std::ops::Range<usize>) {
        let now = self.nanos();
        for s in seqs {
            if let Some(slot) = self.enqueued.get(s) {
                slot.store(now, Ordering::Relaxed);
            }
        }
    }

    /// Latencies (µs) of the finished jobs in `seqs`.
    fn latencies(&self, seqs: std::ops::Range<usize>) -> Vec<u64> {
        let mut out: Vec<u64> = seqs
            .filter_map(|s| {
                let f = self.finished.get(s)?.load(Ordering::Relaxed);
                let e = self.enqueued.get(s)?.load(Ordering::Relaxed);
                (f > 0).then(|| f.saturating_sub(e) / 1000)
            })
            .collect();
        out.sort_unstable();
        out
    }
}

impl Resume for Timed {
    fn resume(&self, state: &[u8], response: &HttpResponse) -> Next {
        let Some((head, rest)) = state.split_first_chunk::<8>() else {
            return self.inner.resume(state, response);
        };
        let seq = u64::from_le_bytes(*head);
        match self.inner.resume(rest, response) {
            Next::Fetch { request, state } => {
                let mut s = Vec::with_capacity(8 + state.len());
                s.extend_from_slice(head);
                s.extend_from_slice(&state);
                Next::Fetch { request, state: s }
            }
            other => {
                if let Some(slot) = usize::try_from(seq).ok().and_then(|s| self.finished.get(s)) {
                    slot.store(self.nanos().max(1), Ordering::Relaxed);
                }
                self.done.fetch_add(1, Ordering::Relaxed);
                other
            }
        }
    }
}

/// The in-process HTTP servers: one answering `{"ok":true}` at once, one that never answers.
struct Servers {
    ok: String,
    stalled: String,
    _runtime: tokio::runtime::Runtime,
}

fn start_servers() -> Result<Servers> {
    use axum::Router;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-http-server")
        .enable_all()
        .build()?;
    let (ok, stalled) = runtime.block_on(async {
        let ok = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        anyhow::Ok((ok, stalled))
    })?;
    let ok_url = format!("http://{}", ok.local_addr()?);
    let stalled_url = format!("http://{}", stalled.local_addr()?);
    let answer = Router::new().fallback(|| async { ([("content-type", "application/json")], "{\"ok\":true}") });
    let hang = Router::new().fallback(|| async {
        std::future::pending::<()>().await;
        ""
    });
    runtime.spawn(async move { axum::serve(ok, answer).await });
    runtime.spawn(async move { axum::serve(stalled, hang).await });
    Ok(Servers { ok: ok_url, stalled: stalled_url, _runtime: runtime })
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

/// Enqueues jobs `seqs` (destination chosen by `route`), `batch` per call, paced at `rate`
/// jobs/s when given; waits while the engine holds `max_pending` jobs.
#[allow(clippy::too_many_arguments)]
fn produce(
    engine: &Engine,
    max_pending: u64,
    timed: &Timed,
    make: &JobMaker,
    seqs: std::ops::Range<usize>,
    batch: usize,
    rate: Option<usize>,
    route: &(dyn Fn(usize) -> (String, String) + Sync),
) -> Result<()> {
    let start = Instant::now();
    let mut next = seqs.start;
    while next < seqs.end {
        let end = (next + batch).min(seqs.end);
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64((next - seqs.start) as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let jobs: Vec<Job> = (next..end)
            .map(|s| {
                let (function_id, url) = route(s);
                timed.wrap(s, make(s, &function_id, &url))
            })
            .collect();
        // Wait for room rather than retrying a refused call (which would need a copy of the jobs).
        while engine.pending() + jobs.len() as u64 > max_pending {
            std::thread::sleep(Duration::from_millis(1));
        }
        timed.mark_enqueued(next..end);
        engine.enqueue(jobs).context("enqueue")?;
        next = end;
    }
    Ok(())
}

fn wait_done(timed: &Timed, target: usize, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while timed.done.load(Ordering::Relaxed) < target {
        if Instant::now() > deadline {
            bail!("only {} of {target} deliveries after {limit:?}", timed.done.load(Ordering::Relaxed));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Runs the benchmark with trivial jobs and a trivial `Resume`.
pub fn run(args: DestinationsBenchArgs) -> Result<()> {
    match args.template.clone() {
        None => run_with(args, Arc::new(Trivial), Arc::new(trivial_job)),
        Some(id) => {
            let (invoker, make) = template_jobs(&id)?;
            run_with(args, invoker, make)
        }
    }
}

/// Jobs that are real invocations of a template destination: the destination for a function id
/// is (re)made with `url = <server>/hook` whenever the benchmark points that id at a server.
fn template_jobs(id: &str) -> Result<(Arc<dyn Resume>, JobMaker)> {
    use hogpipe_dataflow::event::{Event, Project};
    use hogpipe_destinations::invoke::{Destination, Invoker, InvokerOptions};
    let template = hogpipe_destinations::template::template(id)
        .with_context(|| format!("no destination template {id:?} (see `hogpipe destinations list`)"))?;
    let invoker = Arc::new(Invoker::new(InvokerOptions::default()));
    let urls: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>> = Arc::default();
    let project = Project { id: 1, name: "bench".into() };
    let maker = invoker.clone();
    let make: JobMaker = Arc::new(move |seq: usize, function_id: &str, base_url: &str| -> Job {
        let url = format!("{base_url}/hook");
        {
            let mut known = urls.lock().unwrap_or_else(|p| p.into_inner());
            if known.get(function_id) != Some(&url) {
                let mut inputs = serde_json::Map::new();
                inputs.insert("url".into(), url.clone().into());
                match Destination::from_template(function_id, 1, function_id, template, &inputs) {
                    Ok(d) => {
                        maker.upsert(d);
                    }
                    Err(e) => eprintln!("bench: {e}"),
                }
                known.insert(function_id.to_string(), url);
            }
        }
        let mut properties = serde_json::Map::new();
        properties.insert("$current_url".into(), format!("https://example.com/p/{}", seq % 9).into());
        properties.insert("$browser".into(), "Chrome".into());
        properties.insert("plan".into(), "pro".into());
        properties.insert("email".into(), format!("user{}@example.com", seq % 10_000).into());
        let event = Event {
            uuid: format!("0192d0c1-0000-7000-8000-{seq:012x}"),
            team_id: 1,
            event: "$pageview".into(),
            distinct_id: format!("user-{}", seq % 10_000),
            properties,
            timestamp: "2026-01-01T00:00:00.000Z".into(),
            elements_chain: String::new(),
            ip: String::new(),
        };
        match maker.start(function_id, &event, &project) {
            Next::Fetch { request, state } => Job { function_id: function_id.to_string(), team_id: 1, request, state },
            // Not expected from the webhook template; a job the server answers anyway.
            _ => trivial_job(seq, function_id, base_url),
        }
    });
    Ok((invoker, make))
}

/// Runs the benchmark with these jobs and this `Resume` (e.g. the webhook template's invoker).
pub fn run_with(args: DestinationsBenchArgs, resume: Arc<dyn Resume>, make: JobMaker) -> Result<()> {
    if args.jobs == 0 || args.batch == 0 || args.destinations == 0 || args.rate == 0 || args.producers == 0 {
        bail!("--jobs, --batch, --destinations, --producers and --rate must be at least 1");
    }
    let servers = start_servers().context("cannot start the loopback HTTP servers")?;
    let dir = std::env::temp_dir().join(format!("hogpipe-bench-destinations-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let latency_jobs = (args.rate as f64 * args.latency_seconds).ceil() as usize;
    let stall_seconds = args.stall_seconds.ceil().max(1.0) as usize;
    let stall_jobs = args.rate * stall_seconds;
    let total = args.jobs + latency_jobs + stall_jobs;
    let timed = Arc::new(Timed::new(resume, total));
    let config = EngineConfig {
        defaults: DestinationSettings { concurrency: args.concurrency, ..DestinationSettings::default() },
        max_pending: MAX_PENDING,
        worker_threads: args.threads,
        ..EngineConfig::default()
    };
    // Sealed as `serve` seals (a key of its own: the queue is thrown away afterwards).
    let engine = Engine::open(&dir, &SecretKey::generate(), config, timed.clone())?;
    let ids: Vec<String> = (0..args.destinations).map(|d| format!("bench-{d}")).collect();
    let ok_url = servers.ok.clone();
    let spread = |s: usize| (ids[s % ids.len()].clone(), ok_url.clone());
    let rss_start = rss_kib();

    // 1. Throughput: `producers` threads (as dataflow workers) enqueue batches as fast as they can.
    if !args.json {
        eprintln!(
            "throughput: {} jobs over {} destinations from {} producers …",
            args.jobs, args.destinations, args.producers
        );
    }
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let per = args.jobs.div_ceil(args.producers);
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..args.producers)
            .map(|p| {
                let range = (p * per).min(args.jobs)..((p + 1) * per).min(args.jobs);
                let (engine, timed, make, spread) = (&engine, &*timed, &make, &spread);
                scope.spawn(move || produce(engine, MAX_PENDING, timed, make, range, args.batch, None, spread))
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a producer thread panicked"))??;
        }
        Ok(())
    })?;
    let enqueued_in = started.elapsed();
    wait_done(&timed, args.jobs, Duration::from_secs(600))?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let sat = timed.latencies(0..args.jobs);
    let rss_after_throughput = rss_kib();

    // 2. Latency at a fixed rate.
    if !args.json {
        eprintln!("latency: {} jobs/s for {} s …", args.rate, args.latency_seconds);
    }
    let range = args.jobs..args.jobs + latency_jobs;
    let small_batch = (args.rate / 200).clamp(1, args.batch);
    produce(&engine, MAX_PENDING, &timed, &make, range.clone(), small_batch, Some(args.rate), &spread)?;
    wait_done(&timed, args.jobs + latency_jobs, Duration::from_secs(600))?;
    let paced = timed.latencies(range);

    // 3. One destination stalled, another delivering; RSS sampled every second.
    if !args.json {
        eprintln!("stalled: {} jobs/s for {stall_seconds} s, half to a server that never answers …", args.rate);
    }
    let stalled_url = servers.stalled.clone();
    let ok_url = servers.ok.clone();
    let halves = |s: usize| {
        if s.is_multiple_of(2) {
            ("live".to_string(), ok_url.clone())
        } else {
            ("stalled".to_string(), stalled_url.clone())
        }
    };
    let start = args.jobs + latency_jobs;
    let mut rss_samples = Vec::with_capacity(stall_seconds);
    for second in 0..stall_seconds {
        let from = start + second * args.rate;
        produce(&engine, MAX_PENDING, &timed, &make, from..from + args.rate, small_batch, Some(args.rate), &halves)?;
        rss_samples.push(rss_kib());
    }
    let live_jobs = (start..start + stall_jobs).filter(|s| s.is_multiple_of(2)).count();
    wait_done(&timed, args.jobs + latency_jobs + live_jobs, Duration::from_secs(600))?;
    let live = timed.latencies(start..start + stall_jobs);
    let stalled = engine.destination_metrics("stalled").unwrap_or_default();
    drop(engine);
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);

    let result = serde_json::json!({
        "throughput": {
            "jobs": args.jobs,
            "producers": args.producers,
            "seconds": secs,
            "deliveries_per_second": args.jobs as f64 / secs,
            "enqueue_seconds": enqueued_in.as_secs_f64(),
            "cpu_seconds": cpu,
            "cpu_micros_per_delivery": cpu * 1e6 / args.jobs as f64,
            "p50_ms": percentile(&sat, 0.5),
            "p99_ms": percentile(&sat, 0.99),
            "rss_kib_before": rss_start,
            "rss_kib_after": rss_after_throughput,
        },
        "latency": {
            "rate": args.rate,
            "jobs": latency_jobs,
            "p50_ms": percentile(&paced, 0.5),
            "p99_ms": percentile(&paced, 0.99),
            "max_ms": percentile(&paced, 1.0),
        },
        "stalled": {
            "seconds": stall_seconds,
            "live_deliveries": live.len(),
            "live_p50_ms": percentile(&live, 0.5),
            "live_p99_ms": percentile(&live, 0.99),
            "stalled_pending": stalled.queued,
            "stalled_in_memory": stalled.in_memory,
            "stalled_in_flight": stalled.in_flight,
            "rss_kib_each_second": rss_samples,
        },
    });
    if args.json {
        println!("{result}");
        return Ok(());
    }
    println!(
        "throughput  {:.0} deliveries/s ({} jobs, {} destinations, {} producers, {:.2} s; enqueue done after {:.2} s)",
        args.jobs as f64 / secs,
        args.jobs,
        args.destinations,
        args.producers,
        secs,
        enqueued_in.as_secs_f64()
    );
    println!(
        "            CPU {:.2} s = {:.1} µs per delivery (engine, store, server and producers together)",
        cpu,
        cpu * 1e6 / args.jobs as f64
    );
    println!(
        "            enqueue→resume while saturated: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&sat, 0.5),
        percentile(&sat, 0.99)
    );
    println!(
        "latency     at {} jobs/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (enqueue call → resume)",
        args.rate,
        percentile(&paced, 0.5),
        percentile(&paced, 0.99),
        percentile(&paced, 1.0)
    );
    println!(
        "stalled     live: {} deliveries, p50 {:.2} ms, p99 {:.2} ms; stalled: {} pending, {} in memory, {} in flight",
        live.len(),
        percentile(&live, 0.5),
        percentile(&live, 0.99),
        stalled.queued,
        stalled.in_memory,
        stalled.in_flight
    );
    let samples: Vec<String> = rss_samples.iter().map(|k| format!("{:.1}", *k as f64 / 1024.0)).collect();
    println!(
        "memory      RSS MiB: {:.1} at start, {:.1} after the throughput run; stalled run, each second: {}",
        rss_start as f64 / 1024.0,
        rss_after_throughput as f64 / 1024.0,
        samples.join(" ")
    );
    Ok(())
}

/// User + system CPU time of the process so far (from `/proc/self/stat`, in clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    // Fields after the command name (which is in parentheses and may contain spaces).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return f64::NAN };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / 100.0
}
