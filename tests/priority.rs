//! Priority lanes against the real broker: requests on `<model>.priority` overtake a normal
//! backlog, the normal ones keep their share meanwhile, and every request is answered once.
#![cfg(feature = "broker-tests")]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Fixture, Reader, LABELLED};

const NORMAL: usize = 3000;
const PRIORITY: usize = 300;

fn texts(prefix: &str, count: usize) -> Vec<(String, String)> {
    (0..count).map(|i| (format!("{prefix}{i}"), LABELLED[i % LABELLED.len()].0.to_string())).collect()
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 * p).ceil() as usize).clamp(1, values.len()) - 1]
}

#[test]
fn priority_requests_overtake_a_normal_backlog_and_the_normal_ones_keep_their_share() {
    // One normal batch in every 3 while priority has a backlog (10 by default), so that the
    // share shows within 300 priority requests (10 batches of 32). One worker owns both lanes:
    // with two, the sticky assignor may give one worker both priority partitions and the other
    // both normal ones, and then the lanes have nothing to decide.
    let fx = Fixture::new("priority", 2, "[priority]\nmodels = [\"sentiment\"]\nnormal_batch_every = 3\n");
    let priority_topic = format!("{}.priority", fx.requests());
    fx.create_topic(&priority_topic, 2);
    let normal = texts("n", NORMAL);
    let priority = texts("p", PRIORITY);
    fx.produce_texts(&normal);
    let produced_normal = Instant::now();

    let (mut server, log) = fx.spawn_logged("a", "serve.log");
    let mut results = Reader::new(&fx.results(), true);
    results.read_until(200, Duration::from_secs(120));
    assert!(results.records.len() < NORMAL / 2, "the normal backlog must still be there");
    fx.produce_texts_to(&priority_topic, &priority);
    let produced_priority = Instant::now();

    // When each result was seen, in the order they committed.
    let mut seen: Vec<(String, Instant)> =
        results.records.iter().map(|r| (r.json()["id"].as_str().unwrap().to_string(), Instant::now())).collect();
    let until = Instant::now() + Duration::from_secs(600);
    while seen.len() < NORMAL + PRIORITY && Instant::now() < until {
        results.poll_for(Duration::from_millis(50));
        let now = Instant::now();
        for record in &results.records[seen.len()..] {
            seen.push((record.json()["id"].as_str().unwrap().to_string(), now));
        }
    }
    results.poll_for(Duration::from_secs(2));
    common::terminate(&mut server, Duration::from_secs(30));
    let expected: Vec<(String, String)> = normal.iter().chain(&priority).cloned().collect();
    common::assert_exactly_once(&results, &expected);

    let position: HashMap<&str, usize> = seen.iter().enumerate().map(|(i, (id, _))| (id.as_str(), i)).collect();
    let first_priority = priority.iter().map(|(id, _)| position[id.as_str()]).min().unwrap();
    let last_priority = priority.iter().map(|(id, _)| position[id.as_str()]).max().unwrap();
    let normal_left = seen[last_priority..].iter().filter(|(id, _)| id.starts_with('n')).count();
    let normal_between = seen[first_priority..=last_priority].iter().filter(|(id, _)| id.starts_with('n')).count();
    let priority_latency: Vec<f64> = seen
        .iter()
        .filter(|(id, _)| id.starts_with('p'))
        .map(|(_, at)| at.duration_since(produced_priority).as_secs_f64())
        .collect();
    let normal_latency: Vec<f64> = seen
        .iter()
        .filter(|(id, _)| id.starts_with('n'))
        .map(|(_, at)| at.duration_since(produced_normal).as_secs_f64())
        .collect();
    let line = format!(
        "priority lanes: {PRIORITY} priority requests behind {NORMAL} normal ones (1 worker) -> all answered with \
         {normal_left} normal still queued; {normal_between} normal answered meanwhile; p95 {:.2} s priority, \
         {:.1} s normal; whole run {:.0} s",
        percentile(priority_latency, 0.95),
        percentile(normal_latency.clone(), 0.95),
        seen.last().map_or(0.0, |(_, at)| at.duration_since(produced_normal).as_secs_f64()),
    );
    eprintln!("{line}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(normal_left >= NORMAL / 2, "priority requests overtook the backlog: {line}\n{text}");
    assert!(normal_between > 0, "normal requests kept their share meanwhile: {line}");
}
