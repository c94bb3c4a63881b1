//! Crash safety of the whole binary: `hogpipe serve` is killed with SIGKILL while load generators
//! are sending batches, then restarted on the same data dir. Every batch that was answered 200
//! must be in the event log exactly once; batches cut off by the kill may or may not be there
//! (but never twice, and never damaged). Three kill rounds on one data dir, with small segments
//! so the kills land across segment boundaries too. SIGKILL alone rarely tears a record (the
//! kernel finishes a `write` it started), so after each kill the test also appends half a record
//! to every partition's newest segment, as a write cut short by a power loss leaves it, and the
//! restart must cut those tails off.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{read_log, write_config, Http, Server, TempDir, HANG};

const TOKEN: &str = "phc_crash_test_token";
const EVENTS_PER_BATCH: usize = 100;
const LOAD_THREADS: usize = 4;
/// Acknowledged batches (all threads together) before the kill, per round.
const ACKED_BEFORE_KILL: usize = 300;
const ROUNDS: usize = 3;
/// Batches sent after each restart, every one of which must be acknowledged.
const AFTER_RESTART: usize = 5;

/// One batch body and its uuids.
fn batch(round: usize, thread: usize, seq: usize) -> (Vec<u8>, Vec<String>) {
    let mut uuids = Vec::with_capacity(EVENTS_PER_BATCH);
    let mut events = Vec::with_capacity(EVENTS_PER_BATCH);
    for i in 0..EVENTS_PER_BATCH {
        let uuid = uuid::Uuid::new_v4().to_string();
        events.push(serde_json::json!({
            "event": "load",
            "distinct_id": format!("user-{}", (seq * EVENTS_PER_BATCH + i) % 97),
            "uuid": uuid,
            "properties": {"round": round, "thread": thread, "seq": seq, "i": i, "pad": "p".repeat(i * 3)},
        }));
        uuids.push(uuid);
    }
    let body = serde_json::json!({"api_key": TOKEN, "batch": events});
    (serde_json::to_vec(&body).expect("serializes"), uuids)
}

/// What the load generators saw.
#[derive(Default)]
struct Tally {
    /// uuids of batches answered 200.
    acked: Vec<String>,
    /// uuids of every batch written to the socket, answered or not.
    sent: Vec<String>,
    /// Non-200 answers by status.
    refused: HashMap<u16, usize>,
    /// How each thread ended.
    endings: Vec<String>,
}

struct Load {
    stop: Arc<AtomicBool>,
    acked_batches: Arc<AtomicUsize>,
    tally: Arc<Mutex<Tally>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the load threads, each on its own keep-alive connection. A thread stops at the first
    /// failed request (the server is gone) or when told to.
    fn start(addr: SocketAddr, round: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked_batches = Arc::new(AtomicUsize::new(0));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let threads = (0..LOAD_THREADS)
            .map(|thread| {
                let (stop, acked_batches, tally) = (stop.clone(), acked_batches.clone(), tally.clone());
                std::thread::spawn(move || {
                    let mut http = Http::new(addr);
                    let mut seq = 0;
                    let ending = loop {
                        if stop.load(Ordering::Relaxed) {
                            break "stopped".to_string();
                        }
                        let (body, uuids) = batch(round, thread, seq);
                        seq += 1;
                        tally.lock().unwrap_or_else(|e| e.into_inner()).sent.extend(uuids.iter().cloned());
                        match http.post_json("/batch", &body) {
                            Ok(r) if r.status == 200 => {
                                tally.lock().unwrap_or_else(|e| e.into_inner()).acked.extend(uuids);
                                acked_batches.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => {
                                *tally.lock().unwrap_or_else(|e| e.into_inner()).refused.entry(r.status).or_default() +=
                                    1
                            }
                            Err(e) => break format!("request failed: {e}"),
                        }
                    };
                    tally.lock().unwrap_or_else(|e| e.into_inner()).endings.push(format!("thread {thread}: {ending}"));
                })
            })
            .collect();
        Load { stop, acked_batches, tally, threads }
    }

    /// Waits until `n` batches have been acknowledged in total.
    fn wait_for(&self, n: usize, server: &Server) {
        let deadline = Instant::now() + HANG;
        while self.acked_batches.load(Ordering::Relaxed) < n {
            let finished = self.threads.iter().all(JoinHandle::is_finished);
            if finished || Instant::now() > deadline {
                let t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
                panic!(
                    "only {} of {n} batches acknowledged (refused: {:?}; {:?}); server output:\n{}",
                    self.acked_batches.load(Ordering::Relaxed),
                    t.refused,
                    t.endings,
                    server.output()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the threads (those still running) and returns what they saw.
    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("a load thread panicked");
        }
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *tally)
    }
}

/// Appends the first half of each partition's first record in its newest segment to the end of
/// that segment: a torn write. Uses the segment layout documented in the WAL's `format` module
/// (32-byte header, then records framed by a little-endian `u32` body length and a `u32` crc).
/// Returns how many segments were torn.
fn tear_tails(log_dir: &std::path::Path) -> usize {
    const HEADER: usize = 32;
    const FRAME: usize = 8;
    let mut torn = 0;
    for entry in std::fs::read_dir(log_dir).expect("log dir").flatten() {
        if !entry.file_name().to_string_lossy().starts_with("p-") {
            continue;
        }
        let mut segments: Vec<_> = std::fs::read_dir(entry.path())
            .expect("partition dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        segments.sort();
        let Some(newest) = segments.last() else { continue };
        let bytes = std::fs::read(newest).expect("segment");
        if bytes.len() < HEADER + FRAME {
            continue;
        }
        let body_len = u32::from_le_bytes(bytes[HEADER..HEADER + 4].try_into().expect("4 bytes")) as usize;
        let record = &bytes[HEADER..(HEADER + FRAME + body_len).min(bytes.len())];
        let mut file = std::fs::OpenOptions::new().append(true).open(newest).expect("open segment");
        std::io::Write::write_all(&mut file, &record[..record.len() / 2]).expect("append");
        torn += 1;
    }
    torn
}

/// Checks the log against everything sent and acknowledged so far.
fn check_log(data_dir: &std::path::Path, acked: &HashSet<String>, sent: &HashSet<String>, round: usize) {
    let events = read_log(data_dir);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        assert_eq!(e.token, TOKEN, "round {round}: record {} has token {}", e.uuid, e.token);
        assert!(sent.contains(&e.uuid), "round {round}: record {} was never sent", e.uuid);
        let data =
            e.data_json().unwrap_or_else(|err| panic!("round {round}: record {} data is not JSON ({err})", e.uuid));
        assert_eq!(data["uuid"], e.uuid.as_str(), "round {round}: record data does not match its uuid");
        *counts.entry(e.uuid.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "round {round}: events stored more than once: {twice:?}");
    let missing: Vec<_> = acked.iter().filter(|u| !counts.contains_key(u.as_str())).collect();
    assert!(
        missing.is_empty(),
        "round {round}: {} acknowledged events are missing from the log (of {} acknowledged), e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    let unacked_kept = events.len() - acked.len();
    eprintln!(
        "round {round}: {} acknowledged events all present once; {unacked_kept} of {} unacknowledged events were kept",
        acked.len(),
        sent.len() - acked.len()
    );
}

#[test]
fn acknowledged_batches_survive_kill_9() {
    let dir = TempDir::new("crash");
    let config = write_config(dir.path(), &[(1, TOKEN)], "[log]\nsegment_bytes = 1048576\n");
    let data_dir = dir.path().join("data");
    let mut acked: HashSet<String> = HashSet::new();
    let mut sent: HashSet<String> = HashSet::new();

    for round in 0..ROUNDS {
        // Load, then SIGKILL while requests are in flight.
        let mut server = Server::start(&config, &data_dir);
        let load = Load::start(server.addr, round);
        load.wait_for(ACKED_BEFORE_KILL, &server);
        let status = server.kill();
        let tally = load.finish();
        assert!(tally.refused.is_empty(), "round {round}: batches refused before the kill: {:?}", tally.refused);
        eprintln!(
            "round {round}: killed ({status}) after {} acknowledged batches of {} sent",
            tally.acked.len() / EVENTS_PER_BATCH,
            tally.sent.len() / EVENTS_PER_BATCH
        );
        acked.extend(tally.acked);
        sent.extend(tally.sent);
        let torn = tear_tails(&data_dir.join("log"));
        assert!(torn > 0, "round {round}: no segment with a record to tear");

        // Restart on the same data dir: it must recover and take new events.
        let server = Server::start(&config, &data_dir);
        assert!(
            server.output().contains("torn tail"),
            "round {round}: the restart did not report the torn tails:\n{}",
            server.output()
        );
        let mut http = Http::new(server.addr);
        for seq in 0..AFTER_RESTART {
            let (body, uuids) = batch(round, LOAD_THREADS, seq);
            sent.extend(uuids.iter().cloned());
            let r = http
                .post_json("/batch", &body)
                .unwrap_or_else(|e| panic!("round {round}: after restart: {e}\n{}", server.output()));
            assert_eq!(r.status, 200, "round {round}: after restart: {}", r.text());
            acked.extend(uuids);
        }
        drop(http);
        server.stop();
        check_log(&data_dir, &acked, &sent, round);
    }
}
