//! The operator's and client's surface against the real broker: `tidal models`, `tidal produce
//! --rate` / `tidal consume --follow`, and the README's client examples (kcat, Python, curl
//! through the gateway), executed as written. The gateway itself: tests/gateway.rs.
#![cfg(feature = "broker-tests")]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{tidal, Fixture, Server};

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
