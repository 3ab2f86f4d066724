//! A replicated three-broker cluster (scripts/kafka-cluster.sh: KRaft, replication 3,
//! `min.insync.replicas` 2) losing a broker mid-stream: `tidal serve` must answer every request
//! exactly once.
//! - The broker killed or frozen coordinates both the worker's transaction and its group (the
//!   instance name is chosen so that one broker leads both coordinator partitions): librdkafka
//!   has been seen to wait forever inside `send_offsets_to_transaction` then, and the worker's
//!   watchdog must end the process (exit 70) so that its supervisor — this test — restarts it.
//! - The broker killed leads most request partitions (and coordinates nothing of the worker's):
//!   the consumer and producer move to the new leaders.
//! - Every broker restarted in turn (a rolling upgrade), each back in every ISR before the next.
//!
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

    fn metadata_client(&self) -> BaseConsumer {
        ClientConfig::new().set("bootstrap.servers", &self.bootstrap).create().expect("metadata client")
    }

    /// Waits until every partition of every topic has all three replicas in sync again.
    fn wait_fully_replicated(&self) {
        let consumer = self.metadata_client();
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            let lagging = consumer.fetch_metadata(None, Duration::from_secs(10)).map_or(usize::MAX, |m| {
                m.topics().iter().flat_map(|t| t.partitions()).filter(|p| p.isr().len() < 3).count()
            });
            if lagging == 0 {
                return;
            }
            assert!(Instant::now() < until, "{lagging} partitions still under-replicated after 120 s");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The node leading most partitions of `topic`, other than `except`.
    fn busiest_leader(&self, topic: &str, except: i32) -> i32 {
        let consumer = self.metadata_client();
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
        let mut led = std::collections::BTreeMap::new();
        for p in metadata.topics()[0].partitions() {
            *led.entry(p.leader()).or_insert(0) += 1;
        }
        led.into_iter()
            .filter(|(node, _)| *node != except && *node > 0)
            .max_by_key(|(_, n)| *n)
            .map_or((1..=3).find(|n| *n != except).unwrap_or(1), |(node, _)| node)
    }

    /// The node leading `partition` of the internal `topic`.
    fn leader_of(&self, topic: &str, partition: i32) -> i32 {
        let consumer = self.metadata_client();
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
    survives_a_broker_fault("coordinators' broker killed (SIGKILL)", Target::Coordinators, |cluster, node| {
        cluster.node("kill", node)
    });
}

#[test]
fn the_coordinators_broker_frozen_beyond_the_session_timeout_loses_and_duplicates_nothing() {
    survives_a_broker_fault("coordinators' broker frozen 20 s (SIGSTOP)", Target::Coordinators, |cluster, node| {
        cluster.node("pause", node);
        std::thread::sleep(Duration::from_secs(20));
        cluster.node("resume", node);
    });
}

#[test]
fn the_request_partitions_leader_killed_mid_stream_loses_and_duplicates_nothing() {
    survives_a_broker_fault("request partitions' leader killed (SIGKILL)", Target::RequestLeader, |cluster, node| {
        cluster.node("kill", node)
    });
}

#[test]
fn a_rolling_restart_of_every_broker_loses_and_duplicates_nothing() {
    survives_a_broker_fault("rolling restart of the 3 brokers", Target::Coordinators, |cluster, first| {
        // The coordinators' broker goes first, then the others, each back in sync before the next.
        let order = std::iter::once(first).chain((1..=3).filter(|n| *n != first));
        for node in order {
            cluster.node("stop-node", node);
            cluster.node("start-node", node);
            cluster.wait_fully_replicated();
        }
    });
}

/// Which broker a fault hits.
enum Target {
    /// The broker that coordinates the worker's transaction and its group.
    Coordinators,
    /// The broker leading most request partitions, other than the coordinators'.
    RequestLeader,
}

/// Serves requests on the cluster (produced at a steady pace, so that the stream outlasts the
/// fault), applies `fault` to the `target` broker mid-stream, restarts the processor whenever it
/// exits (as its supervisor would), and checks every request is answered exactly once.
fn survives_a_broker_fault(scenario: &str, target: Target, fault: impl FnOnce(&Cluster, i32) + Send) {
    let cluster = Cluster::start();
    // Short call timeout: a call stuck past 2 × 5 s is the watchdog's business.
    let kafka_extra = "call_timeout = \"5s\"\ntransaction_timeout = \"10s\"\n";
    let fx = Fixture::on_cluster("cluster", &cluster.bootstrap, 4, 3, kafka_extra);
    // Transactions held open a little, so that the kill lands inside one.
    fx.set_workers(2);
    fx.edit_config(|c| c + "[faults]\ndelay_before_commit = \"100ms\"\n");
    let (count, rate) = if common::long_form() { (3000, 25.0) } else { (1500, 20.0) };
    let requests = common::requests(count);
    let (records, bad) = common::with_bad_input(common::text_records(&requests), 50);

    // An instance whose worker's transaction coordinator is the group's coordinator too.
    let group_coordinator =
        cluster.leader_of("__consumer_offsets", coordinator_partition(&format!("tidal-{}", fx.prefix), 4));
    // (Worker 0's transactional id; worker 1's coordinator falls where it falls.)
    let instance = (0..100)
        .map(|i| format!("pod{i}"))
        .find(|name| {
            let partition = coordinator_partition(&format!("{}-{name}-0", fx.prefix), 4);
            cluster.leader_of("__transaction_state", partition) == group_coordinator
        })
        .expect("an instance name whose coordinators share a broker");
    let node = match target {
        Target::Coordinators => group_coordinator,
        Target::RequestLeader => cluster.busiest_leader(&fx.requests(), group_coordinator),
    };
    let spawn = || -> Server { fx.spawn(&instance) };
    let mut server = spawn();
    let producing = common::paced_producer(&cluster.bootstrap, &fx.requests(), records, rate);
    let mut committed = Reader::assigned(&cluster.bootstrap, &fx.results(), true);
    let mut dlq = Reader::assigned(&cluster.bootstrap, &fx.dlq(), true);
    committed.read_until(200, Duration::from_secs(180));
    assert!(committed.records.len() >= 200, "no results before the fault");

    let before = committed.records.len();
    let fault_at = Instant::now();
    let mut exits = Vec::new();
    let mut first_after: Option<Duration> = None;
    let mut longest_gap = Duration::ZERO;
    let mut fault_took = Duration::ZERO;
    std::thread::scope(|scope| {
        let faulting = scope.spawn(|| {
            fault(&cluster, node);
            fault_at.elapsed()
        });
        // Supervise: restart the processor whenever it exits, as Kubernetes would.
        let until = Instant::now() + Duration::from_secs(420);
        let mut last_result = Instant::now();
        while (committed.records.len() < requests.len() || !faulting.is_finished()) && Instant::now() < until {
            let seen = committed.records.len();
            committed.poll_for(Duration::from_millis(250));
            if committed.records.len() > seen {
                longest_gap = longest_gap.max(last_result.elapsed());
                last_result = Instant::now();
                if first_after.is_none() {
                    first_after = Some(fault_at.elapsed());
                }
            }
            if let Ok(Some(status)) = server.try_wait() {
                exits.push(status.code());
                server = spawn();
            }
        }
        fault_took = faulting.join().expect("the fault thread");
    });
    producing.join().expect("producer thread");
    dlq.read_until(bad.len(), Duration::from_secs(60));
    // Keep reading: a late duplicate must show.
    committed.poll_for(Duration::from_secs(5));
    dlq.poll_for(Duration::from_secs(1));
    common::terminate(&mut server, Duration::from_secs(40));
    let line = format!(
        "{scenario}: node {node} after {before} results: first result {first_after:?} later, longest gap {longest_gap:?}, fault took {fault_took:?}, processor exits {exits:?}, {} results",
        committed.records.len()
    );
    eprintln!("{line}");
    common::report_scenario(
        &format!("cluster: {scenario}"),
        &committed,
        &requests,
        serde_json::json!({
            "recovery_s": first_after.map(|d| d.as_secs_f64()),
            "longest_gap_s": longest_gap.as_secs_f64(),
            "exits": format!("{exits:?}"),
            "workers": 2,
            "dead_letters": dlq.records.len(),
        }),
    );
    // The premise: each request is in the request topic once (a retried produce of the test's
    // own would make two requests, and two correct answers).
    let mut sent = Reader::assigned(&cluster.bootstrap, &fx.requests(), false);
    sent.read_until(requests.len() + bad.len(), Duration::from_secs(60));
    sent.poll_for(Duration::from_secs(1));
    let mut copies: std::collections::HashMap<Option<String>, usize> = std::collections::HashMap::new();
    for record in &sent.records {
        *copies.entry(record.key.clone()).or_default() += 1;
    }
    let twice: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "requests written twice into the request topic by the test: {twice:?}");
    common::assert_exactly_once(&committed, &requests);
    common::assert_dead_lettered_once(&dlq, &bad);
    assert!(exits.iter().all(|code| *code == Some(70)), "the processor ended otherwise than by its watchdog: {line}");
}
