//! Every worker of every process gets work: 3 processes × 2 workers (6 group members) serving
//! 3 models (3 request topics × 4 partitions). With librdkafka's default eager `range` strategy
//! each topic's 4 partitions went to the same 4 lowest member ids and 2 members sat idle; tidal's
//! consumers use `cooperative-sticky`, which balances the 12 partitions over the 6 members.
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

const PROCESSES: usize = 3;
const WORKERS: usize = 2;
const PARTITIONS: i32 = 4;
const PER_PARTITION: usize = 3;

/// Members of `group` once it is stable with `want` members.
fn wait_for_members(brokers: &str, group: &str, want: usize) -> usize {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let members = consumer
            .fetch_group_list(Some(group), Duration::from_secs(5))
            .ok()
            .and_then(|list| list.groups().iter().find(|g| g.state() == "Stable").map(|g| g.members().len()))
            .unwrap_or(0);
        if members >= want || Instant::now() > until {
            return members;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn six_members_on_three_topics_of_four_partitions_all_answer_requests() {
    let fx = Fixture::for_model("assign", "sentiment", PARTITIONS, "");
    let topics = |kind: &str| format!("{}.{kind}.", fx.prefix);
    for model in ["face-match", "ocr"] {
        fx.create_topic(&format!("{}{model}", topics("requests")), PARTITIONS);
        fx.create_topic(&format!("{}{model}", topics("results")), PARTITIONS);
    }
    let config = std::fs::read_to_string(&fx.config_path)
        .unwrap()
        .replace("workers = 1", &format!("workers = {WORKERS}"))
        .replace("models = [\"sentiment\"]", "models = [\"sentiment\", \"face-match\", \"ocr\"]");
    std::fs::write(&fx.config_path, config).unwrap();

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
    assert!(idle.is_empty(), "workers that answered nothing: {idle:?} (answered: {processors:?})");
}
