//! A destination made from a template, end to end: `hogpipe serve` with `template-webhook` in the
//! config; captured events that match its filter reach a real HTTP server on loopback with the
//! body the inputs describe; a server that answers 500 gets retries.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{write_config, Http, Server, TempDir, HANG};
use serde_json::{json, Value};

const TOKEN: &str = "phc_destinations_test";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Value,
}

/// A keep-alive HTTP/1.1 receiver on loopback that records requests and answers the status the
/// test sets (`fail` first answers get 500).
fn receiver(fail: usize) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let answered = Arc::new(Mutex::new(0usize));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (record, answered) = (record.clone(), answered.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let (method, path) =
                        (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
                    let mut headers = Vec::new();
                    let mut length = 0usize;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                            if k == "content-length" {
                                length = v.parse().unwrap_or(0);
                            }
                            headers.push((k, v));
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let status = {
                        let mut n = answered.lock().unwrap();
                        *n += 1;
                        if *n <= fail {
                            500
                        } else {
                            200
                        }
                    };
                    record.lock().unwrap().push(Received {
                        method,
                        path,
                        headers,
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    });
                    let reply = format!(
                        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}",
                        if status == 200 { "OK" } else { "Internal Server Error" }
                    );
                    if writer.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

fn config(url: &str) -> String {
    format!(
        r#"
[warehouse]
backend = "none"

[[functions]]
id = "orders-hook"
project = 1
type = "destination"
template = "template-webhook"
filter = "event == 'purchase'"

[functions.inputs]
url = "{url}/orders/{{event.distinct_id}}"
body = {{ order = "{{event.properties.order_id}}", amount = "{{event.properties.amount}}", who = "{{person.properties.email}}" }}
headers = {{ "Content-Type" = "application/json", "X-Project" = "{{project.id}}" }}
"#
    )
}

fn capture(server: &Server, n: usize) {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "event": if i % 2 == 0 { "purchase" } else { "$pageview" },
                "distinct_id": format!("user-{i}"),
                "properties": {"order_id": format!("o-{i}"), "amount": i as f64 * 2.5, "$set": {"email": format!("u{i}@example.com")}}
            })
        })
        .collect();
    let body = json!({"api_key": TOKEN, "batch": events}).to_string();
    let response = Http::new(server.addr).post_json("/batch", body.as_bytes()).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
}

fn wait_for(seen: &Arc<Mutex<Vec<Received>>>, n: usize, server: &Server) -> Vec<Received> {
    let deadline = Instant::now() + HANG;
    loop {
        let got = seen.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} requests arrived; server output:\n{}",
            got.len(),
            server.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_template_destination_delivers_matching_events() {
    let (url, seen) = receiver(0);
    let dir = TempDir::new("destinations");
    let config = write_config(dir.path(), &[(1, TOKEN)], &config(&url));
    let server = Server::start(&config, &dir.path().join("data"));
    capture(&server, 20);
    let got = wait_for(&seen, 10, &server);
    std::thread::sleep(Duration::from_millis(300));
    let got_after = seen.lock().unwrap().len();
    assert_eq!(got_after, 10, "only the 10 purchases are delivered: {got:?}");
    let mut orders: Vec<String> = got.iter().map(|r| r.body["order"].as_str().unwrap_or("").to_string()).collect();
    orders.sort();
    let mut expected: Vec<String> = (0..20).step_by(2).map(|i| format!("o-{i}")).collect();
    expected.sort();
    assert_eq!(orders, expected);
    for r in &got {
        let i: usize = r.body["order"].as_str().unwrap()[2..].parse().unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, format!("/orders/user-{i}"));
        assert_eq!(r.body["amount"].as_f64(), Some(i as f64 * 2.5));
        assert_eq!(r.body["who"], json!(format!("u{i}@example.com")));
        assert!(r.headers.contains(&("x-project".into(), "1".into())), "{:?}", r.headers);
        assert!(r.headers.contains(&("content-type".into(), "application/json".into())), "{:?}", r.headers);
    }
    server.stop();
}

#[test]
fn a_failing_receiver_gets_retries_until_it_recovers() {
    // The first two answers are 500: those deliveries are retried and arrive again.
    let (url, seen) = receiver(2);
    let dir = TempDir::new("destinations-retry");
    let config = write_config(dir.path(), &[(1, TOKEN)], &config(&url));
    let server = Server::start(&config, &dir.path().join("data"));
    capture(&server, 2);
    let got = wait_for(&seen, 3, &server);
    assert!(got.iter().all(|r| r.body["order"] == "o-0"), "{got:?}");
    server.stop();
}
