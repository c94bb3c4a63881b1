//! `hogpipe destinations list|show|dead-letters` as a user runs them.

use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hogpipe_destinations::engine::{DestinationSettings, Engine, EngineConfig, Job, DATA_SUBDIR};
use hogpipe_destinations::http::{HttpRequest, HttpResponse, Next, Resume};
use hogpipe_destinations::secret_key::{self, IfMissing, KEY_FILE};

fn hogpipe(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hogpipe")).args(args).output().expect("run hogpipe");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn list_prints_one_template_per_line() {
    let (code, stdout, stderr) = hogpipe(&["destinations", "list"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 8, "{stdout}");
    assert!(lines.iter().any(|l| l.starts_with("template-webhook ") && l.contains("HTTP Webhook")), "{stdout}");
    assert!(lines.iter().all(|l| l.starts_with("template-")), "{stdout}");
}

#[test]
fn show_prints_a_template_and_unknown_ids_exit_1() {
    let (code, stdout, stderr) = hogpipe(&["destinations", "show", "template-discord"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("template-discord: Discord\n"), "{stdout}");
    assert!(stdout.contains("webhookUrl"), "{stdout}");
    assert!(stdout.contains("fetch(inputs.webhookUrl"), "{stdout}");

    let (code, stdout, stderr) = hogpipe(&["destinations", "show", "discord"]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("did you mean `template-discord`?"), "{stderr}");
}

/// Every answer finishes the invocation.
struct Done;

impl Resume for Done {
    fn resume(&self, _state: &[u8], _response: &HttpResponse) -> Next {
        Next::Done { logs: Vec::new() }
    }
}

/// A dead letter in `<data_dir>/destinations`, sealed with the data dir's generated key, as
/// `hogpipe serve` leaves it: a request with a secret to a port where nothing listens.
fn make_dead_letter(data_dir: &std::path::Path) -> u16 {
    let key = secret_key::load(None, data_dir, IfMissing::Create).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = EngineConfig {
        defaults: DestinationSettings { max_attempts: 1, ..DestinationSettings::default() },
        ..EngineConfig::default()
    };
    let engine = Engine::open(&data_dir.join(DATA_SUBDIR), &key, config, Arc::new(Done)).unwrap();
    let request = HttpRequest {
        method: "POST".into(),
        url: format!("http://127.0.0.1:{port}/hook"),
        headers: vec![("authorization".into(), "Bearer SENTINEL-123".into())],
        body: Some("{}".into()),
    };
    engine.enqueue(vec![Job { function_id: "f-hook".into(), team_id: 1, request, state: b"state".to_vec() }]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.dead_letters(None).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no dead letter");
        std::thread::sleep(Duration::from_millis(20));
    }
    engine.shutdown();
    port
}

#[test]
fn dead_letters_open_with_the_key_serve_uses_and_a_replaced_key_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let port = make_dead_letter(data.path());
    let dir = data.path().to_str().unwrap();
    let (code, stdout, stderr) = hogpipe(&["destinations", "dead-letters", "list", "--data-dir", dir]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("f-hook") && stdout.contains(&format!("127.0.0.1:{port}/hook")), "{stdout}");
    let (code, stdout, stderr) = hogpipe(&["destinations", "dead-letters", "show", "1", "--data-dir", dir]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("authorization: <redacted>") && !stdout.contains("SENTINEL"), "{stdout}");

    // The key configured as `[state] secret_key` (the config file `serve` is given): no key file.
    let key_file = data.path().join(KEY_FILE);
    let original = std::fs::read_to_string(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let (code, _, stderr) = hogpipe(&["destinations", "dead-letters", "list", "--data-dir", dir]);
    assert_eq!(code, 1);
    assert!(stderr.contains("secret.key") && stderr.contains("does not exist"), "{stderr}");
    assert!(!key_file.exists(), "the CLI does not make a key that cannot open the queue");
    let config = data.path().join("hogpipe.toml");
    std::fs::write(&config, format!("data_dir = {dir:?}\n[state]\nsecret_key = \"{}\"\n", original.trim())).unwrap();
    let config = config.to_str().unwrap();
    let (code, stdout, stderr) = hogpipe(&["destinations", "dead-letters", "list", "--config", config]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("f-hook"), "{stdout}");

    // Another key in the file: refused with the files named; the dead letter stays.
    std::fs::write(&key_file, [1u8; 32]).unwrap();
    for command in [&["list"][..], &["replay", "1"]] {
        let (code, _, stderr) = hogpipe(&[&["destinations", "dead-letters"], command, &["--data-dir", dir]].concat());
        assert_eq!(code, 1);
        assert!(stderr.contains("does not open the delivery queue"), "{stderr}");
        assert!(stderr.contains(&key_file.display().to_string()), "{stderr}");
        assert!(stderr.contains("delivery.sqlite"), "{stderr}");
    }
    let (code, stdout, stderr) = hogpipe(&["destinations", "dead-letters", "list", "--config", config]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("f-hook"), "{stdout}");
}
