//! The file sink: rotation by size and age, keeping the last K files, torn-tail recovery.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use hogpipe_dataflow::event::Event;
use hogpipe_dataflow::sink::EventSink;
use hogpipe_destinations::sinks::{FileSink, FileSinkConfig};

use super::{event, events, refs};

/// The sink's files, in sequence order, with their sequence numbers.
fn files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .expect("list the directory")
        .map(|e| e.expect("a directory entry").path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_string();
            let rest = name.strip_prefix("events-")?.strip_suffix(".jsonl")?;
            let (time, seq) = rest.split_once('-')?;
            assert_eq!(time.len(), 15, "YYYYMMDDTHHMMSS in {name}");
            assert_eq!(time.as_bytes()[8], b'T', "{name}");
            assert!(time.chars().enumerate().all(|(i, c)| i == 8 || c.is_ascii_digit()), "{name}");
            Some((seq.parse().expect("N is a number"), path))
        })
        .collect();
    found.sort();
    found
}

/// Every line of a file, parsed; fails on a line that is not a whole event.
fn read(path: &Path) -> Vec<Event> {
    let text = fs::read_to_string(path).expect("read a file");
    assert!(text.is_empty() || text.ends_with('\n'), "{} ends mid-line", path.display());
    text.lines().map(|line| serde_json::from_str(line).expect("a whole event per line")).collect()
}

fn read_all(dir: &Path) -> Vec<Event> {
    files(dir).iter().flat_map(|(_, path)| read(path)).collect()
}

#[test]
fn rotates_by_size_and_keeps_every_event_in_order() {
    let data = tempfile::tempdir().expect("tempdir");
    let line_len = serde_json::to_vec(&event(1, 0)).expect("encode").len() as u64 + 1;
    let config = FileSinkConfig { max_bytes: line_len * 4, max_age_secs: 0, ..FileSinkConfig::new("out") };
    let sink = FileSink::open(data.path(), config.clone()).expect("open the sink");
    let written = events(1, 0, 23);
    for batch in written.chunks(5) {
        sink.write(&refs(batch)).expect("write a batch");
    }
    let dir = data.path().join("out");
    let found = files(&dir);
    assert!(found.len() >= 6, "23 lines at about 4 per file make at least 6 files, got {}", found.len());
    for window in found.windows(2) {
        assert!(window[0].0 < window[1].0, "sequence numbers increase");
    }
    for (_, path) in &found {
        let size = fs::metadata(path).expect("metadata").len();
        assert!(size <= config.max_bytes + line_len, "{} has {size} bytes", path.display());
        assert!(size > 0, "{} is empty", path.display());
    }
    assert_eq!(read_all(&dir), written);

    // Reopened, the sink continues the newest file and numbering.
    drop(sink);
    let last = found.last().expect("a file").0;
    let sink = FileSink::open(data.path(), config).expect("reopen the sink");
    sink.write(&refs(&events(1, 23, 40))).expect("write after reopening");
    let again = files(&dir);
    assert!(again.iter().all(|(seq, _)| found.iter().any(|(s, _)| s == seq) || *seq > last));
    assert_eq!(read_all(&dir), events(1, 0, 40));
}

#[test]
fn a_line_bigger_than_the_limit_gets_a_file_of_its_own() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = FileSinkConfig { max_bytes: 10, max_age_secs: 0, ..FileSinkConfig::new(data.path().join("abs")) };
    let sink =
        FileSink::open(Path::new("/nonexistent-data-dir"), config).expect("an absolute dir ignores the data dir");
    sink.write(&refs(&events(2, 0, 3))).expect("write");
    let found = files(&data.path().join("abs"));
    assert_eq!(found.len(), 3);
    for (i, (_, path)) in found.iter().enumerate() {
        assert_eq!(read(path), vec![event(2, i as u32)]);
    }
}

#[test]
fn keeps_only_the_last_files() {
    let data = tempfile::tempdir().expect("tempdir");
    // One line per file.
    let config = FileSinkConfig { max_bytes: 1, max_age_secs: 0, keep: 3, ..FileSinkConfig::new("k") };
    let sink = FileSink::open(data.path(), config).expect("open");
    for i in 0..10 {
        sink.write(&refs(&events(3, i, i + 1))).expect("write");
    }
    let dir = data.path().join("k");
    let found = files(&dir);
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(read_all(&dir), events(3, 7, 10), "the newest files hold the newest events");
    drop(sink);
    // Reopened, the sink counts the files already there.
    let config = FileSinkConfig { max_bytes: 1, max_age_secs: 0, keep: 2, ..FileSinkConfig::new("k") };
    let sink = FileSink::open(data.path(), config).expect("reopen");
    sink.write(&refs(&events(3, 10, 11))).expect("write");
    assert_eq!(read_all(&dir), events(3, 9, 11));
}

#[test]
fn rotates_a_file_older_than_the_age_limit() {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().join("aged");
    fs::create_dir_all(&dir).expect("mkdir");
    let old = dir.join("events-20000101T000000-4.jsonl");
    let line = format!("{}\n", serde_json::to_string(&event(4, 0)).expect("encode"));
    fs::write(&old, &line).expect("write an old file");
    let config = FileSinkConfig { max_bytes: 0, max_age_secs: 3600, ..FileSinkConfig::new("aged") };

    let sink = FileSink::open(data.path(), config.clone()).expect("open");
    sink.write(&refs(&events(4, 1, 3))).expect("write");
    let found = files(&dir);
    assert_eq!(found.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), [4, 5], "a new file after the old one");
    assert_eq!(fs::read_to_string(&old).expect("read"), line, "the old file is untouched");
    drop(sink);

    // A young file is continued after reopening.
    let sink = FileSink::open(data.path(), config).expect("reopen");
    sink.write(&refs(&events(4, 3, 5))).expect("write");
    assert_eq!(files(&dir).len(), 2);
    assert_eq!(read_all(&dir), events(4, 0, 5));
}

#[test]
fn truncates_a_torn_last_line_when_opened() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = FileSinkConfig::new("torn");
    let sink = FileSink::open(data.path(), config.clone()).expect("open");
    sink.write(&refs(&events(5, 0, 10))).expect("write");
    drop(sink);
    let dir = data.path().join("torn");
    let (_, path) = files(&dir).pop().expect("a file");
    let whole = fs::metadata(&path).expect("metadata").len();
    // A crash in the middle of the next batch: part of a line, no newline.
    let mut file = fs::OpenOptions::new().append(true).open(&path).expect("open for append");
    let torn = serde_json::to_string(&event(5, 10)).expect("encode");
    file.write_all(&torn.as_bytes()[..torn.len() / 2]).expect("append half a line");
    drop(file);

    let sink = FileSink::open(data.path(), config.clone()).expect("reopen");
    assert_eq!(fs::metadata(&path).expect("metadata").len(), whole, "the torn tail is gone");
    sink.write(&refs(&events(5, 10, 15))).expect("write after recovery");
    assert_eq!(read_all(&dir), events(5, 0, 15));
    drop(sink);

    // A newest file holding nothing but a torn line is emptied, then continued.
    let lone = dir.join("events-29991231T235959-99.jsonl");
    fs::write(&lone, b"{\"uuid\":\"half").expect("write a torn-only file");
    let sink = FileSink::open(data.path(), config).expect("reopen");
    assert_eq!(fs::metadata(&lone).expect("metadata").len(), 0);
    sink.write(&refs(&events(5, 15, 16))).expect("write");
    assert_eq!(read(&lone), events(5, 15, 16));
}

#[test]
fn an_empty_batch_creates_no_file() {
    let data = tempfile::tempdir().expect("tempdir");
    let sink = FileSink::open(data.path(), FileSinkConfig::new("empty")).expect("open");
    sink.write(&[]).expect("write nothing");
    assert!(files(&data.path().join("empty")).is_empty());
}

#[test]
fn an_unusable_directory_is_an_error_naming_it() {
    let data = tempfile::tempdir().expect("tempdir");
    let blocker = data.path().join("blocker");
    fs::write(&blocker, b"a file, not a directory").expect("write");
    let err = FileSink::open(data.path(), FileSinkConfig::new("blocker/sub")).expect_err("cannot create the dir");
    assert!(err.to_string().contains("blocker/sub"), "{err}");
}

#[test]
fn writers_on_several_threads_never_interleave_lines() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = FileSinkConfig { max_bytes: 20_000, max_age_secs: 0, ..FileSinkConfig::new("threads") };
    let sink = FileSink::open(data.path(), config).expect("open");
    let per_thread: Vec<Vec<Event>> = (0..4).map(|t| events(6 + t, 0, 100)).collect();
    std::thread::scope(|scope| {
        for batch in &per_thread {
            let sink = &sink;
            scope.spawn(move || {
                for chunk in batch.chunks(7) {
                    sink.write(&refs(chunk)).expect("write");
                }
            });
        }
    });
    let read = read_all(&data.path().join("threads"));
    for (t, batch) in per_thread.iter().enumerate() {
        let salt = format!("{:08x}", 6 + t);
        let mine: Vec<&Event> = read.iter().filter(|e| e.uuid.starts_with(&salt)).collect();
        assert_eq!(mine, batch.iter().collect::<Vec<_>>(), "thread {t}: all its events, in order");
    }
}
