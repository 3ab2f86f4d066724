//! End-to-end tests of `tidal serve` against a real Kafka broker (scripts/test.sh starts one).
//! Each test has its own topics, group and transactional ids.
#![cfg(feature = "broker-tests")]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{assert_exactly_once, requests, terminate, Fixture, Reader, LABELLED};

const NEEDS_KAFKA: &str = "needs Kafka and the models: run scripts/test.sh";

#[test]
fn thousand_requests_give_thousand_results_exactly_once() {
    let _ = NEEDS_KAFKA;
    let fx = Fixture::new("thousand", 4, "");
    let reqs = requests(1000);
    fx.produce_texts(&reqs);
    let mut server = fx.spawn("a");
    let mut committed = Reader::new(&fx.results(), true);
    committed.read_until(1000, Duration::from_secs(180));
    committed.poll_for(Duration::from_secs(2)); // anything extra would be a duplicate
    let status = terminate(&mut server, Duration::from_secs(40));
    assert_exactly_once(&committed, &reqs);

    let text_of: HashMap<&str, &str> = reqs.iter().map(|(id, t)| (id.as_str(), t.as_str())).collect();
    for record in &committed.records {
        let v = record.json();
        common::assert_matches_schema(&v, "sentiment.result");
        let id = v["id"].as_str().unwrap();
        assert_eq!(record.key.as_deref(), Some(id), "result keyed like its request");
        assert_eq!(v["model"], "sentiment");
        assert_eq!(v["status"], "ok");
        let text = text_of[id];
        let expected = LABELLED.iter().find(|(t, _)| *t == text).unwrap().1;
        assert_eq!(v["result"]["label"], expected, "label of {text:?}");
        let p =
            v["result"]["scores"]["positive"].as_f64().unwrap() + v["result"]["scores"]["negative"].as_f64().unwrap();
        assert!((p - 1.0).abs() < 1e-4);
    }
    assert!(status.is_some_and(|s| s.success()), "graceful shutdown exits 0 on SIGTERM, got {status:?}");
}

#[test]
fn sigkill_mid_transaction_loses_and_duplicates_nothing() {
    // A pause between produce and commit makes a kill land inside an open transaction.
    let fx = Fixture::new("sigkill", 2, "[batch]\nmax_batch = 10\n[faults]\ndelay_before_commit = \"400ms\"\n");
    let reqs = requests(300);
    fx.produce_texts(&reqs);
    let mut committed = Reader::new(&fx.results(), true);
    let mut uncommitted = Reader::new(&fx.results(), false);
    let mut kills = 0;
    let mut server = fx.spawn("k");
    let deadline = Instant::now() + Duration::from_secs(240);
    while kills < 2 && Instant::now() < deadline {
        committed.poll_for(Duration::from_millis(50));
        uncommitted.poll_for(Duration::from_millis(50));
        // Results written but not yet committed: a transaction is open right now.
        if !committed.records.is_empty() && uncommitted.records.len() > committed.records.len() {
            server.kill().expect("SIGKILL");
            let _ = server.wait();
            kills += 1;
            server = fx.spawn("k");
        }
    }
    assert_eq!(kills, 2, "could not catch an open transaction twice");
    committed.read_until(reqs.len(), Duration::from_secs(240));
    committed.poll_for(Duration::from_secs(2));
    uncommitted.poll_for(Duration::from_secs(2));
    terminate(&mut server, Duration::from_secs(40));
    assert_exactly_once(&committed, &reqs);
    let dup_uncommitted = uncommitted.id_counts().values().filter(|&&c| c > 1).count();
    assert!(
        dup_uncommitted > 0,
        "read_uncommitted should show the aborted writes of the killed processes (it saw {} records)",
        uncommitted.records.len()
    );
}

#[test]
fn second_processor_joining_mid_stream_loses_and_duplicates_nothing() {
    // Small, slowed-down transactions keep the stream going long enough for the join to matter.
    let fx = Fixture::new("join", 4, "[batch]\nmax_batch = 8\n[faults]\ndelay_before_commit = \"100ms\"\n");
    let reqs = requests(1000);
    fx.produce_texts(&reqs);
    let mut committed = Reader::new(&fx.results(), true);
    let mut first = fx.spawn("one");
    committed.read_until(150, Duration::from_secs(120));
    assert!(committed.records.len() >= 150 && committed.records.len() < 1000, "join must happen mid-stream");
    let mut second = fx.spawn("two");
    committed.read_until(reqs.len(), Duration::from_secs(240));
    committed.poll_for(Duration::from_secs(3));
    let first_status = terminate(&mut first, Duration::from_secs(40));
    let second_status = terminate(&mut second, Duration::from_secs(40));
    assert_exactly_once(&committed, &reqs);
    let processors: HashSet<&str> =
        committed.records.iter().filter_map(|r| r.headers.get("tidal.processor").map(String::as_str)).collect();
    assert!(processors.len() == 2, "both processors should have written results, saw {processors:?}");
    assert!(first_status.is_some_and(|s| s.success()) && second_status.is_some_and(|s| s.success()));
}

#[test]
fn every_bad_input_goes_to_the_dead_letter_topic_with_its_reason() {
    let fx = Fixture::new("bad", 1, "[limits]\nmax_payload_bytes = 4096\nmax_text_bytes = 1000\n");
    let good = |i: usize| {
        (
            Some(format!("g{i}")),
            Some(serde_json::json!({"id": format!("g{i}"), "text": "I loved this movie"}).to_string().into_bytes()),
        )
    };
    let bad: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("invalid_utf8", Some(b"{\"text\": \"\xff\xfe\"}".to_vec())),
        ("invalid_json", Some(b"{\"text\": \"unterminated".to_vec())),
        ("not_an_object", Some(b"[\"text\"]".to_vec())),
        ("missing_field", Some(br#"{"id": "x"}"#.to_vec())),
        ("wrong_type", Some(br#"{"text": ["a", "b"]}"#.to_vec())),
        ("empty_text", Some(br#"{"text": "  "}"#.to_vec())),
        ("text_too_long", Some(serde_json::json!({"text": "word ".repeat(300)}).to_string().into_bytes())),
        ("payload_too_large", Some(serde_json::json!({"text": "a", "pad": "x".repeat(5000)}).to_string().into_bytes())),
        ("empty_payload", None),
    ];
    let mut records = Vec::new();
    for (i, (kind, value)) in bad.iter().enumerate() {
        records.push(good(i));
        records.push((Some(format!("bad-{kind}")), value.clone()));
    }
    records.push(good(bad.len()));
    // An expired request is answered, not dead-lettered.
    records.push((Some("late".into()), Some(br#"{"id": "late", "text": "fine", "deadline_ms": 1000}"#.to_vec())));
    fx.produce(&records);

    let mut server = fx.spawn("b");
    let mut results = Reader::new(&fx.results(), true);
    let mut dlq = Reader::new(&fx.dlq(), true);
    results.read_until(bad.len() + 2, Duration::from_secs(120));
    dlq.read_until(bad.len(), Duration::from_secs(60));
    results.poll_for(Duration::from_secs(2));
    dlq.poll_for(Duration::from_secs(1));
    terminate(&mut server, Duration::from_secs(40));

    assert_eq!(results.records.len(), bad.len() + 2, "every good request answered once");
    let late = results.records.iter().map(|r| r.json()).find(|v| v["id"] == "late").expect("expired answered");
    assert_eq!(late["status"], "expired");
    assert!(late["result"].is_null());
    assert_eq!(dlq.records.len(), bad.len(), "one dead letter per bad record");
    for (kind, value) in &bad {
        let letter = dlq
            .records
            .iter()
            .find(|r| r.key.as_deref() == Some(&format!("bad-{kind}")))
            .unwrap_or_else(|| panic!("no dead letter for {kind}"));
        common::assert_matches_schema(&common::headers_json(&letter.headers), "dead-letter.headers");
        assert_eq!(letter.headers["tidal.error.kind"], *kind);
        assert!(!letter.headers["tidal.error.reason"].is_empty());
        assert_eq!(letter.headers["tidal.source.topic"], fx.requests());
        assert_eq!(letter.headers["tidal.model"], "sentiment");
        assert!(letter.headers["tidal.source.offset"].parse::<i64>().is_ok());
        assert_eq!(&letter.value, value, "the original value is kept");
    }
}

#[test]
fn readyz_waits_for_the_group_and_livez_catches_a_wedged_worker() {
    // The first batch holds its worker 15 s, beyond max_poll_interval (6 s): wedged, for /livez.
    let port = common::free_port();
    let fx = Fixture::on_broker(
        "health",
        &common::brokers(),
        1,
        "max_poll_interval = \"6s\"",
        "[batch]\nmax_batch = 4\n[faults]\nslow_model = \"15s\"\nslow_batches = 1\n",
    );
    fx.edit_config(|config| {
        let with_metrics =
            config.replace("[metrics]\nlisten = \"\"", &format!("[metrics]\nlisten = \"127.0.0.1:{port}\""));
        assert_ne!(config, with_metrics);
        with_metrics
    });
    let started = Instant::now();
    let _server = fx.spawn("health");
    let (mut not_ready_seen, mut ready_after) = (false, None);
    while started.elapsed() < Duration::from_secs(60) && ready_after.is_none() {
        match common::http_get(port, "/readyz") {
            Some((503, _)) => not_ready_seen = true,
            Some((200, _)) => ready_after = Some(started.elapsed()),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(not_ready_seen, "/readyz answered 503 while the models loaded and the worker joined");
    let ready_after = ready_after.expect("/readyz turned 200 once the worker joined");
    assert_eq!(common::http_get(port, "/livez").map(|r| r.0), Some(200), "live while idle");

    // A request reaches the slowed model: the worker's loop stops turning.
    fx.produce_texts(&common::requests(1));
    let wedged_at = Instant::now();
    let mut unlive = None;
    while wedged_at.elapsed() < Duration::from_secs(14) && unlive.is_none() {
        if let Some((503, body)) = common::http_get(port, "/livez") {
            unlive = Some((wedged_at.elapsed(), body));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (after, reason) = unlive.expect("/livez failed while the worker was wedged");
    assert!(reason.contains("worker 0 made no progress"), "{reason}");
    // And recovers once the batch is through.
    let until = Instant::now() + Duration::from_secs(60);
    while common::http_get(port, "/livez").map(|r| r.0) != Some(200) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(common::http_get(port, "/livez").map(|r| r.0), Some(200), "live again after the slow batch");
    println!("/readyz 200 after {ready_after:?}; /livez 503 {after:?} into a 15 s stall (bound 6.1 s)");
}

/// Commit markers in the result topic: per partition, the offsets the committed results skip
/// (each transaction leaves one marker in every partition it wrote; aborted records are skipped too).
fn skipped_offsets(reader: &Reader) -> i64 {
    let mut by_partition: HashMap<i32, (i64, i64)> = HashMap::new();
    for record in &reader.records {
        let entry = by_partition.entry(record.partition).or_insert((0, -1));
        *entry = (entry.0 + 1, entry.1.max(record.offset));
    }
    by_partition.values().map(|(count, last)| last + 1 - count).sum()
}

#[test]
fn a_light_model_commits_many_batches_per_transaction_and_survives_a_kill_inside_one() {
    // echo answers in microseconds: with batches of 8, one transaction per batch would mean 250
    // transactions for 2,000 requests; the commit cadence lets one transaction take batches for
    // up to 500 ms. The pause before each commit lets a kill land inside an open transaction.
    let fx = Fixture::for_model(
        "cadence",
        "echo",
        2,
        "[batch]\nmax_batch = 8\n[commit]\ninterval = \"500ms\"\n[faults]\ndelay_before_commit = \"300ms\"\n",
    );
    let first = requests(2000);
    fx.produce_texts(&first);
    let mut committed = Reader::new(&fx.results(), true);
    let mut server = fx.spawn("c");
    committed.read_until(first.len(), Duration::from_secs(120));
    committed.poll_for(Duration::from_secs(1));
    assert_exactly_once(&committed, &first);
    let batches = first.len() as i64 / 8;
    let markers = skipped_offsets(&committed);
    assert!(markers * 5 < batches, "{markers} commit markers for {batches} batches: transactions did not span batches");

    // More requests; kill the processor while one of its transactions is open.
    let second: Vec<(String, String)> = (2000..6000).map(|i| (format!("r{i}"), format!("text {i} é"))).collect();
    let mut uncommitted = Reader::new(&fx.results(), false);
    uncommitted.poll_for(Duration::from_secs(1));
    let seen_before = uncommitted.records.len();
    fx.produce_texts(&second);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut killed = false;
    while !killed && Instant::now() < deadline {
        committed.poll_for(Duration::from_millis(20));
        uncommitted.poll_for(Duration::from_millis(20));
        if uncommitted.records.len() - seen_before > committed.records.len() - first.len() {
            server.kill().expect("SIGKILL");
            let _ = server.wait();
            killed = true;
        }
    }
    assert!(killed, "could not catch an open transaction");
    let mut server = fx.spawn("c");
    let all: Vec<(String, String)> = first.iter().chain(&second).cloned().collect();
    committed.read_until(all.len(), Duration::from_secs(120));
    committed.poll_for(Duration::from_secs(2));
    terminate(&mut server, Duration::from_secs(40));
    assert_exactly_once(&committed, &all);
    let text_of: HashMap<&str, &str> = all.iter().map(|(id, t)| (id.as_str(), t.as_str())).collect();
    for record in &committed.records {
        let v = record.json();
        let text = text_of[v["id"].as_str().unwrap()];
        assert_eq!(v["result"]["length"], text.chars().count(), "echo of {text:?}");
    }
}
