//! Fault scenarios against a real Kafka broker (scripts/test.sh starts one): each keeps the
//! promise that every request is answered exactly once in `read_committed`, and nothing else.

mod common;

use std::time::{Duration, Instant};

use common::{assert_exactly_once, requests, terminate, Fixture, Reader};

#[test]
#[ignore = "needs Kafka and the models: run scripts/test.sh"]
fn a_twin_with_the_same_instance_fences_the_older_process_which_stops() {
    // Small, slowed-down transactions keep the stream going while the twin starts.
    let fx = Fixture::new("zombie", 2, "[batch]\nmax_batch = 8\n[faults]\ndelay_before_commit = \"100ms\"\n");
    let reqs = requests(600);
    fx.produce_texts(&reqs);
    let mut committed = Reader::new(&fx.results(), true);
    let (mut older, older_log) = fx.spawn_logged("twin", "older.log");
    committed.read_until(80, Duration::from_secs(120));
    assert!(committed.records.len() < reqs.len(), "the twin must start mid-stream");
    let (mut newer, newer_log) = fx.spawn_logged("twin", "newer.log");

    let until = Instant::now() + Duration::from_secs(90);
    let mut older_status = None;
    while older_status.is_none() && Instant::now() < until {
        committed.poll_for(Duration::from_millis(200));
        older_status = older.try_wait().unwrap();
    }
    let older_text = std::fs::read_to_string(&older_log).unwrap_or_default();
    let status = older_status.unwrap_or_else(|| panic!("the fenced process kept running; its log:\n{older_text}"));
    assert!(!status.success(), "the fenced process must exit non-zero, got {status}");
    assert!(older_text.contains("another process is running as instance 'twin'"), "older log:\n{older_text}");

    committed.read_until(reqs.len(), Duration::from_secs(240));
    committed.poll_for(Duration::from_secs(3));
    let newer_text = std::fs::read_to_string(&newer_log).unwrap_or_default();
    assert!(newer.try_wait().unwrap().is_none(), "the newer process must keep serving; its log:\n{newer_text}");
    let newer_status = terminate(&mut newer, Duration::from_secs(40));
    assert_exactly_once(&committed, &reqs);
    assert!(newer_status.is_some_and(|s| s.success()), "newer process: {newer_status:?}");
}
