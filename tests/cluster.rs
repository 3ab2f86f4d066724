//! A replicated three-broker cluster (scripts/kafka-cluster.sh: KRaft, replication 3,
//! `min.insync.replicas` 2) losing a broker mid-stream: `tidal serve` must answer every request
//! exactly once. The broker killed coordinates both the worker's transaction and its group (the
//! instance name is chosen so that one broker leads both coordinator partitions): librdkafka has
//! been seen to wait forever inside `send_offsets_to_transaction` then, and the worker's watchdog
//! must end the process (exit 70) so that its supervisor — this test — restarts it.
//! Run by scripts/test.sh.
#![cfg(feature = "broker-tests")]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Fixture, Reader, Server};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::ClientConfig;

const BASE_PORT: u16 = 29092;

/// The cluster, stopped (and its data removed) when dropped.
struct Cluster {
    bootstrap: String,
}

impl Cluster {
    fn start() -> Cluster {
        let output = script(&["start", &BASE_PORT.to_string()]);
        let bootstrap = String::from_utf8_lossy(&output.stdout).trim().lines().last().unwrap_or_default().to_string();
        assert!(bootstrap.contains(','), "no bootstrap list from kafka-cluster.sh: {output:?}");
        let cluster = Cluster { bootstrap };
        cluster.create_coordinator_topics();
        cluster
    }

    /// The broker creates its transaction-state and offsets topics on first use: use both once.
    fn create_coordinator_topics(&self) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("transactional.id", "cluster-warm-up")
            .create()
            .expect("producer");
        producer.init_transactions(Duration::from_secs(60)).expect("init_transactions on the cluster");
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", "cluster-warm-up")
            .create()
            .expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition("cluster-warm-up", 0);
        let _ = consumer.committed_offsets(tpl, Duration::from_secs(60));
    }

    fn node(&self, action: &str, node: i32) {
        script(&[action, &BASE_PORT.to_string(), &node.to_string()]);
    }

    /// The node leading `partition` of the internal `topic`.
    fn leader_of(&self, topic: &str, partition: i32) -> i32 {
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &self.bootstrap).create().expect("metadata client");
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
            let leader = metadata.topics()[0].partitions().iter().find(|p| p.id() == partition).map(|p| p.leader());
            match leader {
                Some(leader) if leader >= 0 => return leader,
                _ if Instant::now() < until => std::thread::sleep(Duration::from_millis(500)),
                _ => panic!("{topic}[{partition}] has no leader"),
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        script(&["stop", &BASE_PORT.to_string()]);
    }
}

fn script(args: &[&str]) -> std::process::Output {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-cluster.sh");
    let output = Command::new("bash").arg(path).args(args).output().expect("run kafka-cluster.sh");
    assert!(output.status.success(), "kafka-cluster.sh {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// Kafka's partition for a coordinator key: `Utils.abs(key.hashCode()) % partitions` (Java's
/// `String.hashCode` over UTF-16 units).
fn coordinator_partition(key: &str, partitions: i32) -> i32 {
    let hash = key.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions
}

#[test]
fn coordinator_partitions_follow_java_string_hash() {
    // "hello".hashCode() is 99162322; "polygenelubricants".hashCode() is Integer.MIN_VALUE,
    // which Kafka's Utils.abs maps to 0.
    assert_eq!(coordinator_partition("hello", 50), 99_162_322 % 50);
    assert_eq!(coordinator_partition("polygenelubricants", 50), 0);
}

#[test]
fn the_coordinators_broker_killed_mid_stream_loses_and_duplicates_nothing() {
    survives_a_coordinator_fault("coordinators' broker killed (SIGKILL)", |cluster, node| cluster.node("kill", node));
}

#[test]
fn the_coordinators_broker_frozen_beyond_the_session_timeout_loses_and_duplicates_nothing() {
    survives_a_coordinator_fault("coordinators' broker frozen 20 s (SIGSTOP)", |cluster, node| {
        cluster.node("pause", node);
        std::thread::sleep(Duration::from_secs(20));
        cluster.node("resume", node);
    });
}

/// Serves requests on the cluster, applies `fault` to the broker that coordinates the worker's
/// transaction and group mid-stream, restarts the processor whenever it exits (as its supervisor
/// would), and checks every request is answered exactly once.
fn survives_a_coordinator_fault(scenario: &str, fault: impl FnOnce(&Cluster, i32)) {
    let cluster = Cluster::start();
    // Short call timeout: a call stuck past 2 × 5 s is the watchdog's business.
    let kafka_extra = "call_timeout = \"5s\"\ntransaction_timeout = \"10s\"\n";
    let fx = Fixture::on_cluster("cluster", &cluster.bootstrap, 4, 3, kafka_extra);
    // Transactions held open a little, so that the kill lands inside one.
    let config = std::fs::read_to_string(&fx.config_path).unwrap() + "[faults]\ndelay_before_commit = \"100ms\"\n";
    std::fs::write(&fx.config_path, config).unwrap();
    let requests = common::requests(if common::long_form() { 2000 } else { 1200 });
    fx.produce_texts(&requests);

    // An instance whose worker's transaction coordinator is the group's coordinator too.
    let group_coordinator =
        cluster.leader_of("__consumer_offsets", coordinator_partition(&format!("tidal-{}", fx.prefix), 4));
    let instance = (0..100)
        .map(|i| format!("pod{i}"))
        .find(|name| {
            let partition = coordinator_partition(&format!("{}-{name}-0", fx.prefix), 4);
            cluster.leader_of("__transaction_state", partition) == group_coordinator
        })
        .expect("an instance name whose coordinators share a broker");
    let spawn = || -> Server { fx.spawn(&instance) };
    let mut server = spawn();
    let mut committed = Reader::on(&cluster.bootstrap, &fx.results(), true);
    committed.read_until(200, Duration::from_secs(180));
    assert!(committed.records.len() >= 200, "no results before the fault");

    let coordinator = group_coordinator;
    let before = committed.records.len();
    let killed_at = Instant::now();
    fault(&cluster, coordinator);

    // Supervise: restart the processor whenever it exits, as Kubernetes would.
    let mut exits = Vec::new();
    let mut first_after: Option<Duration> = None;
    let until = Instant::now() + Duration::from_secs(300);
    while committed.records.len() < requests.len() && Instant::now() < until {
        committed.poll_for(Duration::from_millis(250));
        if first_after.is_none() && committed.records.len() > before {
            first_after = Some(killed_at.elapsed());
        }
        if let Ok(Some(status)) = server.try_wait() {
            exits.push(status.code());
            server = spawn();
        }
    }
    committed.poll_for(Duration::from_secs(5));
    common::terminate(&mut server, Duration::from_secs(40));
    let line = format!(
        "{scenario}: node {coordinator} (transaction and group coordinator) after {before} results: first result {first_after:?} later, processor exits {exits:?}, {} results",
        committed.records.len()
    );
    eprintln!("{line}");
    common::report_scenario(
        &format!("cluster: {scenario}"),
        &committed,
        &requests,
        serde_json::json!({"recovery_s": first_after.map(|d| d.as_secs_f64()), "exits": format!("{exits:?}")}),
    );
    common::assert_exactly_once(&committed, &requests);
    assert!(exits.iter().all(|code| *code == Some(70)), "the processor ended otherwise than by its watchdog: {line}");
}
