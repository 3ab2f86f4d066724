//! Every worker of every process gets work, and scaling out and back in pauses no one for long,
//! under both group protocols (`kafka.group_protocol`: `classic` with cooperative-sticky, and
//! KIP-848's `consumer`).
//!
//! - 3 processes × 2 workers (6 group members) serving 3 models (3 request topics × 4
//!   partitions). With librdkafka's default eager `range` strategy each topic's 4 partitions went
//!   to the same 4 lowest member ids and 2 members sat idle.
//! - 1 → 4 → 1 processes under a steady load: every member answers, every request once, and the
//!   pauses are printed (the longest gap between a member's results; join time; the worst
//!   end-to-end latency a request saw) for the README's table.
//!
//! A real broker; scripts/test.sh runs it.
#![cfg(feature = "broker-tests")]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Fixture, Reader, Server};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use tidal::kafka::groups::describe_group;

const PROCESSES: usize = 3;
const WORKERS: usize = 2;
const PARTITIONS: i32 = 4;
const PER_PARTITION: usize = 3;

/// Members of `group` once it is stable with `want` members (described through the admin API,
/// which answers for both protocols).
fn wait_for_members(brokers: &str, group: &str, want: usize) -> usize {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let members = describe_group(consumer.client(), group, Duration::from_secs(5))
            .ok()
            .filter(|g| g.state == "Stable")
            .map_or(0, |g| g.members.len());
        if members >= want || Instant::now() > until {
            return members;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `group_protocol = "<protocol>"` in the fixture's `[kafka]` section.
fn use_protocol(fx: &Fixture, protocol: &str) {
    fx.edit_config(|c| c.replacen("[kafka]\n", &format!("[kafka]\ngroup_protocol = \"{protocol}\"\n"), 1));
}

#[test]
fn six_members_on_three_topics_of_four_partitions_all_answer_requests_classic() {
    six_members_all_answer("classic");
}

#[test]
fn six_members_on_three_topics_of_four_partitions_all_answer_requests_kip848() {
    six_members_all_answer("consumer");
}

fn six_members_all_answer(protocol: &str) {
    let fx = Fixture::for_model("assign", "sentiment", PARTITIONS, "");
    use_protocol(&fx, protocol);
    let topics = |kind: &str| format!("{}.{kind}.", fx.prefix);
    for model in ["face-match", "ocr"] {
        fx.create_topic(&format!("{}{model}", topics("requests")), PARTITIONS);
        fx.create_topic(&format!("{}{model}", topics("results")), PARTITIONS);
    }
    fx.set_workers(WORKERS);
    fx.edit_config(|c| c.replace("models = [\"sentiment\"]", "models = [\"sentiment\", \"face-match\", \"ocr\"]"));

    let mut servers: Vec<Server> = (0..PROCESSES).map(|i| fx.spawn(&format!("p{i}"))).collect();
    let group = format!("tidal-{}", fx.prefix);
    let members = wait_for_members(&fx.brokers, &group, PROCESSES * WORKERS);
    assert_eq!(members, PROCESSES * WORKERS, "the group never had every worker as a member");
    // Let the cooperative rebalances settle before the requests arrive.
    std::thread::sleep(Duration::from_secs(5));

    let face =
        std::fs::read(tidal::config::tidal_home().join("testdata/faces/obama.jpg")).expect("run scripts/setup.sh");
    let page = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ocr/sans-28.png")).unwrap();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &fx.brokers)
        .set("message.max.bytes", "16777216")
        .create()
        .unwrap();
    let mut expected: HashMap<String, HashSet<String>> = HashMap::new();
    for model in ["sentiment", "face-match", "ocr"] {
        let topic = format!("{}{model}", topics("requests"));
        for partition in 0..PARTITIONS {
            for n in 0..PER_PARTITION {
                let id = format!("{model}-{partition}-{n}");
                let value = match model {
                    "sentiment" => serde_json::json!({"id": id, "text": "I loved this movie"}),
                    "face-match" => serde_json::json!({"id": id, "image_a": b64(&face), "image_b": b64(&face)}),
                    _ => serde_json::json!({"id": id, "image": b64(&page)}),
                }
                .to_string();
                let mut record = BaseRecord::to(&topic).partition(partition).key(id.as_str()).payload(value.as_str());
                while let Err((_, returned)) = producer.send(record) {
                    producer.poll(Duration::from_millis(10));
                    record = returned;
                }
                expected.entry(model.to_string()).or_default().insert(id);
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let mut processors: HashSet<String> = HashSet::new();
    for (model, ids) in &expected {
        let mut reader = Reader::new(&format!("{}{model}", topics("results")), true);
        reader.read_until(ids.len(), Duration::from_secs(240));
        reader.poll_for(Duration::from_secs(2));
        let wanted: Vec<(String, String)> = ids.iter().map(|id| (id.clone(), String::new())).collect();
        common::assert_exactly_once(&reader, &wanted);
        processors.extend(reader.records.iter().filter_map(|r| r.headers.get("tidal.processor").cloned()));
    }
    for server in &mut servers {
        common::terminate(server, Duration::from_secs(40));
    }
    let prefix = &fx.prefix;
    let every_worker: HashSet<String> =
        (0..PROCESSES).flat_map(|p| (0..WORKERS).map(move |w| format!("{prefix}-p{p}-{w}"))).collect();
    let idle: Vec<&String> = every_worker.difference(&processors).collect();
    assert!(idle.is_empty(), "{protocol}: workers that answered nothing: {idle:?} (answered: {processors:?})");
}

#[test]
fn scaling_out_one_to_four_and_back_pauses_briefly_classic() {
    scale_out_and_back("classic");
}

#[test]
fn scaling_out_one_to_four_and_back_pauses_briefly_kip848() {
    scale_out_and_back("consumer");
}

/// One echo processor serves 8 partitions at a steady 200 requests/s; 3 more join at 8 s and
/// leave (SIGTERM) at 22 s. Every member must answer and every request be answered once; the
/// pauses are printed, not asserted (timings are the bench's business).
fn scale_out_and_back(protocol: &str) {
    const RATE: f64 = 200.0;
    let fx = Fixture::for_model("scaleout", "echo", 8, "");
    use_protocol(&fx, protocol);
    let group = format!("tidal-{}", fx.prefix);
    let mut stable = fx.spawn("p0");
    assert_eq!(wait_for_members(&fx.brokers, &group, 1), 1, "{protocol}: the first processor never joined");
    let requests: Vec<(String, String)> =
        (0..(RATE * 36.0) as usize).map(|i| (format!("e{i}"), "x".repeat(1 + i % 40))).collect();
    let producing = common::paced_producer(&fx.brokers, &fx.requests(), common::text_records(&requests), RATE);
    let mut results = Reader::new(&fx.results(), true);
    let started = common::epoch_ms();
    let poll_until = |reader: &mut Reader, at_s: i64| {
        while common::epoch_ms() < started + at_s * 1000 {
            reader.poll_for(Duration::from_millis(100));
        }
    };
    poll_until(&mut results, 8);
    let joined_ms = common::epoch_ms();
    let mut joiners: Vec<Server> = (1..4).map(|i| fx.spawn(&format!("p{i}"))).collect();
    poll_until(&mut results, 22);
    let left_ms = common::epoch_ms();
    for joiner in &mut joiners {
        common::terminate(joiner, Duration::from_secs(40));
    }
    let sent = producing.join().expect("producer thread");
    results.read_until(requests.len(), Duration::from_secs(120));
    results.poll_for(Duration::from_secs(2));
    common::terminate(&mut stable, Duration::from_secs(40));
    common::assert_exactly_once(&results, &requests);

    // Per member: its results' timestamps in order.
    let mut by_member: HashMap<String, Vec<i64>> = HashMap::new();
    for record in &results.records {
        let member = record.headers.get("tidal.processor").cloned().unwrap_or_default();
        by_member.entry(member).or_default().extend(record.timestamp_ms);
    }
    let prefix = &fx.prefix;
    let mut lines = Vec::new();
    for p in 0..4 {
        let member = format!("{prefix}-p{p}-0");
        let mut times = by_member.remove(&member).unwrap_or_default();
        assert!(!times.is_empty(), "{protocol}: member p{p} answered nothing");
        times.sort_unstable();
        let longest_gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        let first = if p == 0 { String::from("-") } else { format!("{} ms", times[0] - joined_ms) };
        lines.push(format!(
            "p{p}: {} results, longest gap {longest_gap} ms, first result after start {first}",
            times.len()
        ));
    }
    // What a client saw: the worst end-to-end latency of requests sent around each change.
    let worst = |from: i64, to: i64| -> i64 {
        results
            .records
            .iter()
            .filter_map(|r| {
                let sent_at = *sent.get(r.json()["id"].as_str()?)?;
                (from..to).contains(&sent_at).then_some(r.timestamp_ms? - sent_at)
            })
            .max()
            .unwrap_or(0)
    };
    let steady = worst(started + 2000, joined_ms);
    let out = worst(joined_ms, left_ms);
    let back = worst(left_ms, i64::MAX);
    eprintln!(
        "rebalance pauses ({protocol}): worst end-to-end latency steady {steady} ms, while scaling 1 -> 4 {out} ms, 4 -> 1 {back} ms; {}",
        lines.join("; ")
    );
}

#[test]
fn request_partitions_added_while_serving_are_served_within_seconds_classic() {
    added_partitions_are_served("classic");
}

#[test]
fn request_partitions_added_while_serving_are_served_within_seconds_kip848() {
    added_partitions_are_served("consumer");
}

/// A processor serving 2 partitions; the request topic grows to 4 and a request goes to each new
/// partition: both must be answered well before librdkafka's default metadata refresh (5 min).
fn added_partitions_are_served(protocol: &str) {
    let fx = Fixture::for_model("grow", "echo", 2, "");
    use_protocol(&fx, protocol);
    let mut server = fx.spawn("p0");
    let group = format!("tidal-{}", fx.prefix);
    assert_eq!(wait_for_members(&fx.brokers, &group, 1), 1, "{protocol}: the processor never joined");
    common::add_partitions(&fx.brokers, &fx.requests(), 4);
    let grown = Instant::now();
    for partition in [2, 3] {
        let id = format!("new-{partition}");
        let value = serde_json::json!({"id": id, "text": "on a new partition"}).to_string();
        common::produce_to_partition(&fx.brokers, &fx.requests(), partition, &id, &value);
    }
    let mut results = Reader::new(&fx.results(), true);
    results.read_until(2, Duration::from_secs(90));
    let took = grown.elapsed();
    results.poll_for(Duration::from_secs(1));
    common::terminate(&mut server, Duration::from_secs(40));
    eprintln!("{protocol}: requests on added partitions answered {took:.1?} after the topic grew");
    common::assert_each_id_once(&results, ["new-2", "new-3"]);
}
