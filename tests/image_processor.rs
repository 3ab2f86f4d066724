//! End-to-end tests of the image models through `tidal serve` and a real Kafka broker
//! (scripts/test.sh starts one): the same exactly-once checks as for sentiment, plus image input
//! in both forms (base64 JSON and raw values) and bad images going to the dead-letter topic.
#![cfg(feature = "broker-tests")]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::{assert_each_id_once, terminate, Fixture, Reader};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn face_photo(name: &str) -> Vec<u8> {
    let path = tidal::config::tidal_home().join("testdata/faces").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{} ({e}): run scripts/setup.sh", path.display()))
}

fn ocr_page(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ocr").join(name)).unwrap()
}

#[test]
fn face_match_requests_are_answered_exactly_once() {
    let fx = Fixture::for_model("faces", "face-match", 2, "[batch]\nmax_batch = 8\n");
    let photos = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"];
    let encoded: HashMap<&str, String> = photos.iter().map(|p| (*p, b64(&face_photo(p)))).collect();
    let mut expected: HashMap<String, bool> = HashMap::new();
    let mut records = Vec::new();
    for i in 0..24 {
        let (a, b) = (photos[i % 4], photos[(i / 4) % 4]);
        let id = format!("f{i}");
        let same_person = a.starts_with("obama") == b.starts_with("obama");
        expected.insert(id.clone(), same_person);
        let value = serde_json::json!({"id": id, "image_a": encoded[a], "image_b": encoded[b]}).to_string();
        records.push((Some(id), Some(value.into_bytes())));
    }
    // Two bad requests among them.
    records.push((Some("bad-b64".into()), Some(br#"{"id": "bad-b64", "image_a": "%%", "image_b": "%%"}"#.to_vec())));
    let truncated = b64(&face_photo("biden.jpg")[..600]);
    let value = serde_json::json!({"id": "bad-jpeg", "image_a": encoded["obama.jpg"], "image_b": truncated});
    records.push((Some("bad-jpeg".into()), Some(value.to_string().into_bytes())));
    fx.produce(&records);

    let mut server = fx.spawn("a");
    let mut committed = Reader::new(&fx.results(), true);
    committed.read_until(expected.len(), Duration::from_secs(240));
    let mut dlq = Reader::new(&fx.dlq(), true);
    dlq.read_until(2, Duration::from_secs(30));
    committed.poll_for(Duration::from_secs(2));
    let status = terminate(&mut server, Duration::from_secs(40));

    let ids: Vec<String> = expected.keys().cloned().collect();
    assert_each_id_once(&committed, ids.iter().map(String::as_str));
    for record in &committed.records {
        let v = record.json();
        common::assert_matches_schema(&v, "face-match.result");
        let id = v["id"].as_str().unwrap();
        assert_eq!(v["model"], "face-match");
        assert_eq!(v["result"]["match"], expected[id], "{id}: {}", v["result"]);
        assert!(v["result"]["similarity"].is_f64());
    }
    let kinds: HashMap<String, String> = dlq
        .records
        .iter()
        .map(|r| {
            let header = |k: &str| r.headers.iter().find(|(key, _)| key.as_str() == k).map(|(_, v)| v.clone()).unwrap();
            (r.key.clone().unwrap(), header("tidal.error.kind"))
        })
        .collect();
    assert_eq!(kinds.get("bad-b64").map(String::as_str), Some("invalid_base64"));
    assert_eq!(kinds.get("bad-jpeg").map(String::as_str), Some("corrupt_image"));
    assert!(status.is_some_and(|s| s.success()), "exit status {status:?}");
}

#[test]
fn ocr_requests_survive_a_crash_mid_transaction_exactly_once() {
    // Slow commits leave a transaction open long enough to kill the processor inside it.
    let fx = Fixture::for_model("ocr", "ocr", 2, "[batch]\nmax_batch = 4\n[faults]\ndelay_before_commit = \"400ms\"\n");
    let pages = ["sans-28.png", "serif-22.png", "mono-34.png", "sans-26-rotated.png"];
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ocr.json")).unwrap(),
    )
    .unwrap();
    let mut truth: HashMap<String, String> = HashMap::new();
    let mut records = Vec::new();
    for i in 0..24 {
        let page = pages[i % pages.len()];
        let id = format!("o{i}");
        let lines: Vec<&str> = golden[page]["truth"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        truth.insert(id.clone(), lines.join("\n"));
        if i % 2 == 0 {
            let value = serde_json::json!({"id": id, "image": b64(&ocr_page(page))}).to_string();
            records.push((Some(id), Some(value.into_bytes()), Vec::new()));
        } else {
            // Raw PNG bytes as the value; the id travels in a header.
            let headers = vec![("content-type", "image/png".to_string()), ("id", id.clone())];
            records.push((Some(id), Some(ocr_page(page)), headers));
        }
    }
    let bomb = {
        let mut png = ocr_page("sans-28.png");
        png[16..24].copy_from_slice(&[0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0]); // 100000 x 100000
        let crc = crc32fast::hash(&png[12..29]); // IHDR type + data
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        png
    };
    records.push((Some("bomb".into()), Some(bomb), vec![("content-type", "image/png".to_string())]));
    records.push((
        Some("gif".into()),
        Some(b"GIF89a garbage".to_vec()),
        vec![("content-type", "image/gif".to_string())],
    ));
    fx.produce_with_headers(&records);

    let mut uncommitted = Reader::new(&fx.results(), false);
    let mut server = fx.spawn("a");
    // Kill while a transaction is open: some results written but not yet committed.
    uncommitted.read_until(2, Duration::from_secs(120));
    let _ = server.kill();
    let _ = server.wait();
    let mut server = fx.spawn("a");
    let mut committed = Reader::new(&fx.results(), true);
    committed.read_until(truth.len(), Duration::from_secs(240));
    let mut dlq = Reader::new(&fx.dlq(), true);
    dlq.read_until(2, Duration::from_secs(30));
    committed.poll_for(Duration::from_secs(2));
    let status = terminate(&mut server, Duration::from_secs(40));

    let ids: Vec<String> = truth.keys().cloned().collect();
    assert_each_id_once(&committed, ids.iter().map(String::as_str));
    for record in &committed.records {
        let v = record.json();
        common::assert_matches_schema(&v, "ocr.result");
        let id = v["id"].as_str().unwrap();
        assert_eq!(v["model"], "ocr");
        assert_eq!(v["result"]["text"], truth[id].as_str(), "{id}");
    }
    let kinds: Vec<String> = dlq
        .records
        .iter()
        .filter_map(|r| r.headers.iter().find(|(k, _)| k.as_str() == "tidal.error.kind").map(|(_, v)| v.clone()))
        .collect();
    assert!(kinds.contains(&"image_too_large".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"unsupported_image".to_string()), "{kinds:?}");
    assert!(status.is_some_and(|s| s.success()), "exit status {status:?}");
}
