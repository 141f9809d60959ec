//! `flowlm serve` on the loopback address with the bundled model: the OpenAI endpoints, errors
//! that name their field, streaming, batches that change nothing, a full queue, disconnects, and
//! a bounded load test with malformed bodies mixed in.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// A running server, killed when dropped.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowlm"))
            .args(["serve", "--port", "0"])
            .args(extra)
            .current_dir(ROOT)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting flowlm serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("reading the address");
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Self { child, address }
    }

    /// (status, body) of one request (`Connection: close`; chunked bodies decoded).
    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.address).expect("connecting");
        stream
            .set_read_timeout(Some(Duration::from_secs(300)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("reading the response");
        parse_response(&raw)
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = self.request("POST", path, &body.to_string());
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, value)
    }

    fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.request("GET", "/metrics", "");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    }

    fn peak_memory_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if !chunked {
        return (status, body.to_string());
    }
    let mut rest = body;
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    (status, out)
}

fn completion(prompt: &str, tokens: usize) -> Value {
    json!({"prompt": prompt, "max_tokens": tokens, "steps": tokens, "temperature": 0})
}

fn text_of(body: &Value) -> String {
    body["choices"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {body}"))
        .to_string()
}

#[test]
fn completions_chat_models_health_and_errors_that_name_the_field() {
    let server = Server::start(&[]);
    let (status, body) = server.post("/v1/completions", &completion("ROMEO:", 16));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "text_completion");
    assert!(!text_of(&body).is_empty());
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let chat = json!({"messages": [{"role": "user", "content": "Who is there?"}],
                      "max_tokens": 8, "temperature": 0, "unknown_field": [1, 2]});
    let (status, body) = server.post("/v1/chat/completions", &chat);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");

    let (status, models) = server.request("GET", "/v1/models", "");
    assert_eq!(status, 200);
    assert!(models.contains("\"default\""), "{models}");
    assert_eq!(server.request("GET", "/health", "").0, 200);
    let (status, page) = server.request("GET", "/", "");
    assert!(
        status == 200 && page.contains("flowlm.step"),
        "the page reads step events"
    );

    for (body, field) in [
        (json!({"prompt": "x", "max_tokens": "many"}), "max_tokens"),
        (
            json!({"prompt": "x", "max_tokens": 100000000}),
            "max_tokens",
        ),
        (json!({"prompt": "x", "max_tokens": 256}), "max_tokens"),
        (
            json!({"prompt": "x", "temperature": f64::MAX}),
            "temperature",
        ),
        (
            json!({"prompt": "x", "max_tokens": 8, "block_length": 3}),
            "block_length",
        ),
        (json!({"prompt": "x", "sampler": "beam"}), "sampler"),
        (
            json!({"prompt": "x", "cache": "dual", "temperature": 1}),
            "cache",
        ),
    ] {
        let (status, error) = server.post("/v1/completions", &body);
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["param"], field, "{body}: {error}");
    }
    let (status, error) = server.request("POST", "/v1/completions", "{\"prompt\": ");
    assert_eq!(status, 400);
    assert!(error.contains("\"param\":\"body\""), "{error}");
}

#[test]
fn a_stream_sends_the_same_text_in_chunks_then_done() {
    let server = Server::start(&[]);
    let (_, whole) = server.post("/v1/completions", &completion("ROMEO:", 32));
    let mut request = completion("ROMEO:", 32);
    request["stream"] = json!(true);
    request["stream_steps"] = json!(true);
    let (status, events) = server.request("POST", "/v1/completions", &request.to_string());
    assert_eq!(status, 200);
    let mut text = String::new();
    let mut steps = 0;
    let mut finish = None;
    let data: Vec<&str> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{events}");
    for line in &data[..data.len() - 1] {
        let chunk: Value = serde_json::from_str(line).unwrap();
        if chunk["object"] == "flowlm.step" {
            steps += 1;
            continue;
        }
        text.push_str(chunk["choices"][0]["text"].as_str().unwrap());
        if let Some(reason) = chunk["choices"][0]["finish_reason"].as_str() {
            finish = Some(reason.to_string());
        }
    }
    assert_eq!(text, text_of(&whole));
    assert_eq!(steps, 32, "one step event per step");
    assert_eq!(
        finish.as_deref(),
        whole["choices"][0]["finish_reason"].as_str()
    );
    assert!(events.contains("event: flowlm.step"));
}

/// Requests decoded together return what each returns alone, and they were decoded together
/// (fewer steps than one run each): deterministic ones, and sampling ones (the bundled model's
/// random remasking, temperature 0.8), whose rows draw from their own seeded streams.
#[test]
fn batched_requests_return_what_they_return_alone() {
    let server = Server::start(&[]);
    let prompts = [
        "ROMEO:",
        "JULIET. O Romeo",
        "KING.",
        "Enter HAMLET",
        "First Citizen:",
        "Ay,",
    ];
    for extra in [
        json!({"remasking": "low-confidence"}),
        json!({"temperature": 0.8, "seed": 5}),
    ] {
        let completion = |prompt: &str| {
            let mut body = completion(prompt, 16);
            for (key, value) in extra.as_object().unwrap() {
                body[key] = value.clone();
            }
            body
        };
        let alone: Vec<String> = prompts
            .iter()
            .map(|p| text_of(&server.post("/v1/completions", &completion(p)).1))
            .collect();
        let steps_before = server.metric("flowlm_denoising_steps_total");
        let together: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = prompts
                .iter()
                .map(|p| {
                    let (server, body) = (&server, completion(p));
                    scope.spawn(move || text_of(&server.post("/v1/completions", &body).1))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(together, alone, "{extra}");
        let steps = server.metric("flowlm_denoising_steps_total") - steps_before;
        assert!(
            steps < (16 * prompts.len()) as f64,
            "{extra}: {steps} steps: the requests were not batched"
        );
    }
}

/// A request that arrives while another decodes joins it at the next step (continuous
/// batching): the steps overlap, and every answer is what it is alone.
#[test]
fn requests_join_a_running_decode_between_steps() {
    let server = Server::start(&[]);
    let request = |prompt: &str| {
        json!({"prompt": prompt, "max_tokens": 64, "steps": 64, "temperature": 0,
               "remasking": "low-confidence"})
    };
    let prompts = ["ROMEO:", "KING.", "Enter HAMLET", "Ay,"];
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| text_of(&server.post("/v1/completions", &request(p)).1))
        .collect();
    let steps_before = server.metric("flowlm_denoising_steps_total");
    let together: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (server, body) = (&server, request(p));
                scope.spawn(move || {
                    // The first decodes alone for a while; the others arrive mid-way.
                    std::thread::sleep(Duration::from_millis(if i == 0 { 0 } else { 400 }));
                    text_of(&server.post("/v1/completions", &body).1)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(together, alone);
    let steps = server.metric("flowlm_denoising_steps_total") - steps_before;
    assert!(
        steps > 64.0 && steps < 128.0,
        "{steps} steps: the later requests should join the first between steps"
    );
}

#[test]
fn a_full_queue_answers_429_and_a_gone_client_frees_its_work() {
    let server = Server::start(&["--queue", "1", "--max-batch", "1"]);
    let long = json!({"prompt": "ROMEO:", "max_tokens": 128, "steps": 128, "temperature": 0});
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let (server, long) = (&server, &long);
                scope.spawn(move || server.post("/v1/completions", long).0)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");

    // A streaming client that leaves after the first chunk: its request ends as abandoned.
    let failed_before = server.metric("flowlm_requests_failed_total");
    let mut request = long.clone();
    request["stream"] = json!(true);
    request["stream_steps"] = json!(true);
    let body = request.to_string();
    let mut stream = TcpStream::connect(&server.address).unwrap();
    write!(
        stream,
        "POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut first = [0u8; 64];
    let _ = stream.read(&mut first).unwrap();
    drop(stream);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while server.metric("flowlm_requests_failed_total") <= failed_before {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned request never stopped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 100 concurrent clients, every third body malformed, some sent slowly: no crash, every good
/// request answered, every bad one a 400, memory bounded.
#[test]
fn a_hundred_concurrent_clients_with_malformed_bodies() {
    let server = Server::start(&[]);
    let bad_bodies = [
        "{\"prompt\": ",
        "{\"prompt\": \"x\", \"max_tokens\": -1}",
        "{\"prompt\": \"x\", \"max_tokens\": 99999999999}",
        "{\"prompt\": [1, 2, 3]}",
        "[]",
        "{\"prompt\": \"x\", \"n\": \"two\"}",
    ];
    let started = std::time::Instant::now();
    let results: Vec<(bool, u16)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..100)
            .map(|i| {
                let server = &server;
                scope.spawn(move || {
                    if i % 3 == 0 {
                        let body = bad_bodies[i / 3 % bad_bodies.len()];
                        (false, server.request("POST", "/v1/completions", body).0)
                    } else if i % 10 == 1 {
                        (
                            true,
                            slow_request(&server.address, &completion("ROMEO:", 8)),
                        )
                    } else {
                        (
                            true,
                            server.post("/v1/completions", &completion("Ay,", 8)).0,
                        )
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (good, status)) in results.iter().enumerate() {
        let expected = if *good { 200 } else { 400 };
        assert_eq!(*status, expected, "client {i}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(240),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(server.request("GET", "/health", "").0, 200, "still serving");
    let peak = server.peak_memory_kib();
    assert!(peak < 1024 * 1024, "peak memory {peak} KiB");
}

/// A request whose body arrives in pieces over about a second.
fn slow_request(address: &str, body: &Value) -> u16 {
    let body = body.to_string();
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    for piece in body.as_bytes().chunks(body.len().div_ceil(4)) {
        std::thread::sleep(Duration::from_millis(250));
        stream.write_all(piece).unwrap();
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_response(&raw).0
}
