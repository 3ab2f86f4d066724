//! The operator's and client's surface against the real broker: the HTTP gateway, `tidal models`,
//! `tidal produce --rate` / `tidal consume --follow`, and the README's client examples (kcat,
//! Python, curl through the gateway), executed as written.
#![cfg(feature = "broker-tests")]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{tidal, Fixture, Reader, Server, LABELLED};

/// Starts `tidal gateway` for the fixture's topics and waits until `/health` answers.
fn start_gateway(fx: &Fixture, port: u16, timeout: &str) -> Server {
    let child = tidal()
        .args(["gateway", "--config"])
        .arg(&fx.config_path)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--metrics-listen", "", "--model", "sentiment"])
        .args(["--timeout", timeout])
        .stdout(Stdio::null())
        .spawn()
        .expect("start tidal gateway");
    let server = Server(child);
    let runtime = runtime();
    let healthy = runtime.block_on(async {
        for _ in 0..120 {
            if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/health")).await {
                if response.status().is_success() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    });
    assert!(healthy, "the gateway did not become healthy within 30 s");
    server
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn post(port: u16, path: &str, body: String) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("gateway reachable");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("gateway answered non-JSON {text:?}: {e}")))
}

#[test]
fn gateway_answers_through_the_stream_exactly_once() {
    let fx = Fixture::new("gateway", 2, "");
    let _server = fx.spawn("a");
    let port = common::free_port();
    let _gateway = start_gateway(&fx, port, "60s");

    // 24 concurrent callers, ids given by some, made by the gateway for the others.
    let answers = runtime().block_on(async {
        let calls = (0..24).map(|i| {
            let (text, label) = LABELLED[i % LABELLED.len()];
            let body = if i % 2 == 0 {
                serde_json::json!({"id": format!("g{i}"), "text": text})
            } else {
                serde_json::json!({"text": text})
            };
            async move { (label, post(port, "/v1/models/sentiment", body.to_string()).await) }
        });
        futures_join_all(calls).await
    });
    let mut ids = HashSet::new();
    for (i, (label, (status, body))) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "call {i}: {body}");
        common::assert_matches_schema(body, "sentiment.result");
        assert_eq!(body["result"]["label"], *label, "call {i}: {body}");
        if i % 2 == 0 {
            assert_eq!(body["id"], format!("g{i}"), "the caller's id is kept");
        }
        assert!(ids.insert(body["id"].as_str().unwrap().to_string()), "each caller gets its own result");
    }

    // The results went through the topic, once each.
    let mut committed = Reader::new(&fx.results(), true);
    committed.read_until(24, Duration::from_secs(30));
    committed.poll_for(Duration::from_secs(1));
    let seen: Vec<String> = committed.records.iter().map(|r| r.json()["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(seen.len(), 24, "one committed result per call: {seen:?}");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), ids);

    let rt = runtime();
    // Bad input: the processor dead-letters it and the gateway says why.
    let (status, body) = rt.block_on(post(port, "/v1/models/sentiment", r#"{"id": "bad-1"}"#.into()));
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["kind"], "missing_field", "{body}");
    // Refused before Kafka: not an object, unknown model.
    let (status, body) = rt.block_on(post(port, "/v1/models/sentiment", "[1, 2]".into()));
    assert_eq!(status, 400, "{body}");
    let (status, body) = rt.block_on(post(port, "/v1/models/nope", "{}".into()));
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["reason"].as_str().unwrap().contains("sentiment"), "names what it serves: {body}");
}

#[test]
fn gateway_retries_with_the_same_id_run_the_model_once() {
    let fx = Fixture::new("gateway-retry", 1, "");
    let port = common::free_port();
    let _gateway = start_gateway(&fx, port, "60s");
    let body = r#"{"id": "retry-1", "text": "An absolute masterpiece, moving and beautifully acted."}"#.to_string();
    // Threads of its own: the spawned calls run while this thread sleeps.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Three calls with the same id and body while no processor runs: the first produces the
    // request, the two retries join it; a processor started later answers all three.
    let calls = rt.spawn({
        let body = body.clone();
        async move {
            let calls = (0..3).map(|_| post(port, "/v1/models/sentiment", body.clone()));
            futures_join_all(calls).await
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    // The same id with another body is someone else's request: refused while the first waits.
    let other = r#"{"id": "retry-1", "text": "something else"}"#.to_string();
    let (status, answer) = rt.block_on(post(port, "/v1/models/sentiment", other.clone()));
    assert_eq!(status, 409, "{answer}");
    let _server = fx.spawn("a");
    let answers = rt.block_on(calls).unwrap();
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
        assert_eq!(answer["result"]["label"], "positive", "{answer}");
    }
    // A retry after the answer gets it again, without a new request.
    let (status, again) = rt.block_on(post(port, "/v1/models/sentiment", body));
    assert_eq!((status, &again), (200, &answers[0].1), "the kept answer");
    let (status, _) = rt.block_on(post(port, "/v1/models/sentiment", other));
    assert_eq!(status, 409, "another body under an answered id");
    let mut requests = Reader::new(&fx.requests(), false);
    requests.read_until(2, Duration::from_secs(5));
    assert_eq!(requests.records.len(), 1, "one request in the stream for four calls");
    let mut results = Reader::new(&fx.results(), true);
    results.read_until(2, Duration::from_secs(10));
    assert_eq!(results.records.len(), 1, "the model ran once");
}

#[test]
fn gateway_times_out_when_no_processor_answers() {
    let fx = Fixture::new("gateway-timeout", 1, "");
    let port = common::free_port();
    let _gateway = start_gateway(&fx, port, "60s");
    let started = Instant::now();
    let body = r#"{"id": "late-1", "text": "nobody is serving"}"#.to_string();
    let (status, answer) = runtime().block_on(post(port, "/v1/models/sentiment?timeout_ms=1500", body));
    assert_eq!(status, 504, "{answer}");
    assert_eq!(answer["id"], "late-1");
    assert!(started.elapsed() < Duration::from_secs(20), "the client's timeout_ms applies");

    // The request stayed in the stream with its deadline: a processor started later answers it
    // "expired" without running the model.
    let _server = fx.spawn("a");
    let mut committed = Reader::new(&fx.results(), true);
    committed.read_until(1, Duration::from_secs(60));
    let result = committed.records[0].json();
    assert_eq!(result["id"], "late-1");
    assert_eq!(result["status"], "expired", "{result}");
    common::assert_matches_schema(&result, "sentiment.result");
}

/// `join_all` without another dependency: polls every future on the current-thread runtime.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("call task"));
    }
    out
}

#[test]
fn models_verify_runs_each_model_on_a_sample() {
    let output = tidal().args(["models", "list"]).output().unwrap();
    assert!(output.status.success());
    let list = String::from_utf8_lossy(&output.stdout);
    for name in ["sentiment", "face-match", "ocr"] {
        let line = list.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} listed: {list}"));
        assert!(line.ends_with("installed"), "{line}");
    }

    let verify = |args: &[&str]| {
        let output = tidal().args(["models", "verify"]).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "verify {args:?}: {stderr}");
        serde_json::from_slice::<serde_json::Value>(&output.stdout).expect("verify prints JSON")
    };
    let sentiment = verify(&["sentiment"]);
    assert_eq!(sentiment["result"]["label"], "positive", "{sentiment}");
    assert!(sentiment["infer"].as_f64().unwrap() > 0.0);

    // The built-in OCR sample is a golden page: the model must read its text.
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/ocr.json")).unwrap(),
    )
    .unwrap();
    let ocr = verify(&["ocr"]);
    let truth: Vec<&str> =
        golden["sans-28.png"]["truth"].as_array().unwrap().iter().filter_map(|l| l.as_str()).collect();
    assert_eq!(ocr["result"]["text"], truth.join("\n"), "the sample page read exactly");

    let page = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/ocr/mono-34.png");
    let from_file = verify(&["ocr", "--input", page]);
    assert_ne!(from_file["result"]["text"], ocr["result"]["text"], "--input replaces the sample");

    let face = verify(&["face-match"]);
    assert_eq!(face["result"]["match"], false, "a text page has no face: {face}");

    let missing = tidal().args(["models", "verify", "sentiment", "--model-dir", "/nonexistent"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("missing") && stderr.contains("scripts/setup.sh"), "says how to fix: {stderr}");
}

#[test]
fn produce_paces_at_its_rate_and_consume_follows() {
    let fx = Fixture::new("cli", 1, "");
    let lines: String = (0..30).map(|i| format!("{{\"id\": \"c{i}\", \"text\": \"line {i}\"}}\n")).collect();
    let file = fx.dir.path().join("requests.jsonl");
    std::fs::write(&file, lines).unwrap();

    let mut follower = tidal()
        .args(["consume", "--brokers", &fx.brokers, "--topic", &fx.requests(), "--follow", "--idle", "1s"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let produced = tidal()
        .args(["produce", "--brokers", &fx.brokers, "--topic", &fx.requests(), "--rate", "20"])
        .arg(&file)
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(produced.status.success(), "{}", String::from_utf8_lossy(&produced.stderr));
    assert!(String::from_utf8_lossy(&produced.stderr).contains("produced 30 records"));
    // 30 records at 20/s are spaced over at least 29/20 s (a lower bound: pacing sleeps).
    assert!(took >= Duration::from_millis(1450), "--rate 20 paced 30 records in {took:?}");

    let mut reader = BufReader::new(follower.stdout.take().unwrap());
    let mut ids = Vec::new();
    while ids.len() < 30 {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "consume --follow ended early after {ids:?}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        ids.push(value["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids, (0..30).map(|i| format!("c{i}")).collect::<Vec<_>>(), "in order, once each");
    std::thread::sleep(Duration::from_secs(2));
    assert!(follower.try_wait().unwrap().is_none(), "--follow keeps reading past --idle");
    follower.kill().unwrap();
    let _ = follower.wait();

    let bad = tidal().args(["produce", "--brokers", &fx.brokers, "--rate", "0"]).arg(&file).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--rate must be a positive"));
}

/// The README block after `<!-- checked: NAME -->`, with the README's broker and gateway
/// addresses replaced by the test's.
fn readme_block(name: &str, brokers: &str, gateway_port: u16) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let marker = format!("<!-- checked: {name} -->");
    let after = &readme[readme.find(&marker).unwrap_or_else(|| panic!("README has no {marker}")) + marker.len()..];
    let start = after.find("```").unwrap();
    let body = &after[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let end = body.find("\n```").unwrap();
    body[..end].replace("localhost:9092", brokers).replace("localhost:8080", &format!("127.0.0.1:{gateway_port}"))
}

fn run_shell(script: &str) -> std::process::Output {
    Command::new("bash").args(["-euo", "pipefail", "-c", script]).output().unwrap()
}

#[test]
fn readme_client_examples_work_as_written() {
    let brokers = common::brokers();
    let applied = tidal().args(["topics", "apply", "--brokers", &brokers]).output().unwrap();
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let app = format!("readme-{nonce}");
    let _server = Server(
        tidal()
            .args(["serve", "--brokers", &brokers, "--app", &app, "--workers", "1", "--no-pin"])
            .args(["--metrics-listen", "", "--models", "sentiment"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // kcat: produce, then read the committed results until ours is there.
    let produce = run_shell(&readme_block("kcat-produce", &brokers, 0));
    assert!(produce.status.success(), "kcat produce: {}", String::from_utf8_lossy(&produce.stderr));
    let consume = readme_block("kcat-consume", &brokers, 0);
    let until = Instant::now() + Duration::from_secs(90);
    let found = loop {
        let output = run_shell(&consume);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            break stdout;
        }
        assert!(Instant::now() < until, "kcat never printed the result: {}", String::from_utf8_lossy(&output.stderr));
        std::thread::sleep(Duration::from_secs(1));
    };
    let result: serde_json::Value = serde_json::from_str(found.trim()).expect("kcat printed the result JSON");
    assert_eq!(result["id"], "kcat-1");
    assert_eq!(result["result"]["label"], "positive", "{result}");

    // Python (confluent-kafka from the set-up venv).
    let python = std::env::var("TIDAL_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = readme_block("python-client", &brokers, 0);
    let output = Command::new(&python).args(["-c", &script]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "python client: {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.trim().starts_with("positive"), "python client printed {stdout:?}");

    // curl through the gateway.
    let port = common::free_port();
    let _gateway = Server(
        tidal()
            .args(["gateway", "--brokers", &brokers, "--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", "", "--model", "sentiment"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let curl = readme_block("gateway-curl", &brokers, port);
    let until = Instant::now() + Duration::from_secs(30);
    let output = loop {
        let output = run_shell(&curl);
        if output.status.success() || Instant::now() > until {
            break output;
        }
        std::thread::sleep(Duration::from_millis(500)); // the gateway is still starting
    };
    assert!(output.status.success(), "curl: {}", String::from_utf8_lossy(&output.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("curl printed the result JSON");
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["result"]["label"], "positive", "{answer}");
}
