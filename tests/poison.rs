//! Requests that cannot be answered for reasons the request schema cannot see: an id so long that
//! its result exceeds what the result topic accepts, a result topic whose `max.message.bytes` is
//! smaller than a result, a model that panics on one request. Each must become one dead letter
//! while the partition moves on and every other request is answered exactly once (a real broker,
//! `tidal serve` as a child process; scripts/test.sh runs them).
#![cfg(feature = "broker-tests")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{assert_exactly_once, terminate, Fixture, Reader};

fn dead_letter_kinds(dlq: &Reader) -> HashMap<String, String> {
    dlq.records
        .iter()
        .map(|r| (r.key.clone().unwrap_or_default(), r.headers.get("tidal.error.kind").cloned().unwrap_or_default()))
        .collect()
}

#[test]
fn results_the_broker_refuses_become_dead_letters_and_the_partition_moves_on() {
    // One partition: every request queues behind the ones whose results cannot be delivered.
    let fx = Fixture::new("refused", 1, "[limits]\nmax_id_bytes = 4096\n");
    // A result topic that accepts about one ordinary result per record batch.
    fx.set_topic_config(&fx.results(), "max.message.bytes", "1500");
    let expected = common::requests(24);
    let mut records: Vec<(Option<String>, Option<Vec<u8>>)> = Vec::new();
    let value = |id: &str, text: &str| Some(serde_json::json!({"id": id, "text": text}).to_string().into_bytes());
    for (i, (id, text)) in expected.iter().enumerate() {
        records.push((Some(id.clone()), value(id, text)));
        if i == 5 || i == 17 {
            // An id within max_id_bytes whose result (the id is echoed) exceeds the topic's limit.
            let long_id = format!("long-{i}-{}", "x".repeat(2000));
            records.push((Some(format!("long-{i}")), value(&long_id, "I loved this movie")));
        }
    }
    // An id beyond max_id_bytes (1.2 MB): refused at decoding.
    let huge_id = "h".repeat(1_200_000);
    records.push((Some("huge".into()), value(&huge_id, "terrible film")));
    fx.produce(&records);

    let mut server = fx.spawn("a");
    let mut committed = Reader::new(&fx.results(), true);
    committed.read_until(expected.len(), Duration::from_secs(180));
    let mut dlq = Reader::new(&fx.dlq(), true);
    dlq.read_until(3, Duration::from_secs(60));
    // Keep reading: a late duplicate must show.
    committed.poll_for(Duration::from_secs(3));
    dlq.poll_for(Duration::from_secs(1));
    let still_running = server.try_wait().expect("status").is_none();
    terminate(&mut server, Duration::from_secs(40));

    assert!(still_running, "the processor stopped");
    assert_exactly_once(&committed, &expected);
    let kinds = dead_letter_kinds(&dlq);
    assert_eq!(dlq.records.len(), 3, "dead letters: {kinds:?}");
    assert_eq!(kinds.get("long-5").map(String::as_str), Some("result_too_large"), "{kinds:?}");
    assert_eq!(kinds.get("long-17").map(String::as_str), Some("result_too_large"), "{kinds:?}");
    assert_eq!(kinds.get("huge").map(String::as_str), Some("id_too_long"), "{kinds:?}");
    for record in &dlq.records {
        common::assert_matches_schema(&common::headers_json(&record.headers), "dead-letter.headers");
        assert!(record.value.is_some(), "the dead letter carries the original request");
    }
    let reason =
        &dlq.records.iter().find(|r| r.key.as_deref() == Some("long-5")).unwrap().headers["tidal.error.reason"];
    assert!(reason.contains(&fx.results()) && reason.contains("too large"), "{reason}");
}

#[test]
fn a_panic_on_one_request_is_one_dead_letter_and_the_worker_goes_on() {
    let fx = Fixture::new("panic", 2, "[faults]\npanic_on_id = \"r7\"\n");
    let requests = common::requests(30);
    fx.produce_texts(&requests);
    let mut server = fx.spawn("a");
    let mut committed = Reader::new(&fx.results(), true);
    committed.read_until(requests.len() - 1, Duration::from_secs(120));
    let mut dlq = Reader::new(&fx.dlq(), true);
    dlq.read_until(1, Duration::from_secs(30));
    committed.poll_for(Duration::from_secs(3));
    let still_running = server.try_wait().expect("status").is_none();
    terminate(&mut server, Duration::from_secs(40));

    assert!(still_running, "a panic ended the processor");
    let answered: Vec<(String, String)> = requests.iter().filter(|(id, _)| id != "r7").cloned().collect();
    assert_exactly_once(&committed, &answered);
    assert_eq!(dlq.records.len(), 1);
    let headers = &dlq.records[0].headers;
    assert_eq!(headers["tidal.error.kind"], "inference_failed");
    assert!(headers["tidal.error.reason"].contains("panicked"), "{}", headers["tidal.error.reason"]);
    assert_eq!(dlq.records[0].key.as_deref(), Some("r7"));
}
