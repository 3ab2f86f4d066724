//! The scaler against a real Kafka broker (scripts/test.sh starts one): a burst of sentiment
//! requests makes `tidal scale run` start more `tidal serve` processes, the lag drains, every
//! request is answered exactly once, and the replicas return to the minimum; a stalled group is
//! reported and not scaled up.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{brokers, terminate, Fixture, Reader};
use tidal::scale::observe::Observer;

fn spawn_scaler(fx: &Fixture, scale_toml: &str) -> (Child, std::path::PathBuf) {
    let path = fx.dir.path().join("scale.toml");
    std::fs::write(&path, scale_toml).unwrap();
    let log = fx.dir.path().join("scale.log");
    let child = Command::new(env!("CARGO_BIN_EXE_tidal"))
        .args(["scale", "run", "--brokers", &brokers(), "--config"])
        .arg(&path)
        .env("TIDAL_LOG", "info,librdkafka=warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start tidal scale run");
    (child, log)
}

/// Watches `group` on the fixture's request topic, as the scaler does.
fn observer_of(group: &str, fx: &Fixture) -> Observer {
    let kafka = tidal::config::KafkaConfig { brokers: brokers(), ..Default::default() };
    Observer::new(&kafka, group, vec![fx.requests()], "").unwrap()
}

fn members(observer: &Observer) -> u32 {
    observer.snapshot(0.0).map(|s| s.members).unwrap_or(0)
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out waiting for {what}");
}

#[test]
#[ignore = "needs Kafka and the models: run scripts/test.sh"]
fn a_burst_scales_out_drains_exactly_once_and_scales_back() {
    let fx = Fixture::new("scale", 4, "");
    let group = format!("tidal-{}", fx.prefix);
    let scale_toml = format!(
        r#"
[watch]
group = "{group}"
topics = ["{requests}"]
interval = "1s"
metrics_listen = ""
decisions_topic = "{prefix}.decisions"
[policies]
min_replicas = 1
max_replicas = 2
[policies.lag]
lag_threshold = 200
[policies.damping]
stabilization = "6s"
[actuator]
kind = "local"
instance_prefix = "scaled"
metrics_base_port = 0
serve_args = ["--config", "{config}", "--no-pin"]
"#,
        requests = fx.requests(),
        config = fx.config_path.display(),
        prefix = fx.prefix
    );
    fx.create_topic(&format!("{}.decisions", fx.prefix), 1);
    let (mut scaler, log) = spawn_scaler(&fx, &scale_toml);
    let observer = observer_of(&group, &fx);
    wait_for("the first processor to join", Duration::from_secs(60), || members(&observer) >= 1);

    let requests: Vec<(String, String)> =
        (0..3000).map(|i| (format!("s{i}"), common::LABELLED[i % common::LABELLED.len()].0.to_string())).collect();
    let burst_at = Instant::now();
    fx.produce_texts(&requests);
    wait_for("a second processor", Duration::from_secs(60), || members(&observer) >= 2);
    let scaled_after = burst_at.elapsed();

    let mut committed = Reader::new(&fx.results(), true);
    committed.read_until(requests.len(), Duration::from_secs(240));
    let drained_after = burst_at.elapsed();
    wait_for("the lag to reach zero", Duration::from_secs(30), || {
        observer.snapshot(0.0).is_ok_and(|s| s.total_lag() == 0)
    });
    // Back to the minimum once the stabilisation window has passed.
    wait_for("the replicas to return to one", Duration::from_secs(60), || members(&observer) == 1);
    committed.poll_for(Duration::from_secs(2));
    let status = terminate(&mut scaler, Duration::from_secs(60));
    println!("burst → second processor in {scaled_after:?}; all {} results in {drained_after:?}", requests.len());

    let counts = committed.id_counts();
    assert!(counts.values().all(|&c| c == 1), "duplicates in read_committed");
    assert_eq!(counts.len(), requests.len(), "every request answered");
    let writers: std::collections::HashSet<String> = committed
        .records
        .iter()
        .filter_map(|r| r.headers.iter().find(|(k, _)| k.as_str() == "tidal.processor").map(|(_, v)| v.clone()))
        .collect();
    assert!(writers.len() >= 2, "results from both processors: {writers:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("scaling:") && text.contains("policy="), "decisions are logged with their policy:\n{text}");
    assert!(status.is_some_and(|s| s.success()), "scaler exit {status:?}");
    // Every change is also on the decisions topic: at least 1 → 2 and 2 → 1.
    let mut decisions = Reader::new(&format!("{}.decisions", fx.prefix), false);
    decisions.read_until(2, Duration::from_secs(20));
    let moves: Vec<(u64, u64)> = decisions
        .records
        .iter()
        .map(|r| (r.json()["from"].as_u64().unwrap(), r.json()["to"].as_u64().unwrap()))
        .collect();
    assert!(moves.contains(&(1, 2)) && moves.contains(&(2, 1)), "decision records: {moves:?}");
    wait_for("the scaler's processors to leave", Duration::from_secs(30), || members(&observer) == 0);
}

#[test]
#[ignore = "needs Kafka: run scripts/test.sh"]
fn a_stalled_group_is_reported_and_not_scaled_up() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::ClientConfig;
    let fx = Fixture::new("stall", 2, "");
    let group = format!("tidal-{}", fx.prefix);
    // A member that holds every partition and never commits: a stuck worker.
    let stuck: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    stuck.subscribe(&[&fx.requests()]).unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while stuck.assignment().map(|a| a.count()).unwrap_or(0) == 0 && Instant::now() < until {
        stuck.poll(Duration::from_millis(100));
    }
    let scale_toml = format!(
        r#"
[watch]
group = "{group}"
topics = ["{requests}"]
interval = "1s"
metrics_listen = ""
[policies]
min_replicas = 1
max_replicas = 4
rate = {{ per_replica_rate = 1000.0 }}
[policies.lag]
lag_threshold = 1000
[policies.damping]
stall_after = 2
[actuator]
kind = "dry-run"
"#,
        requests = fx.requests()
    );
    let (mut scaler, log) = spawn_scaler(&fx, &scale_toml);
    // Load arrives steadily; nothing is processed. By the end the lag (~3,000) asks for 3 replicas.
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(15) {
        let batch: Vec<(String, String)> = (0..100).map(|i| (format!("x{n}-{i}"), "stuck".to_string())).collect();
        fx.produce_texts(&batch);
        n += 1;
        for _ in 0..5 {
            stuck.poll(Duration::from_millis(100)); // stays in the group, commits nothing
        }
    }
    let status = terminate(&mut scaler, Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("stalled"), "the stall is reported:\n{text}");
    assert!(!text.contains("to=2") && !text.contains("to=3") && !text.contains("to=4"), "no scale-up:\n{text}");
    assert!(status.is_some_and(|s| s.success()), "scaler exit {status:?}");
}

#[test]
#[ignore = "needs Kafka: run scripts/test.sh"]
fn an_override_record_wins_and_grows_partitions_when_allowed() {
    let fx = Fixture::new("override", 1, "");
    let group = format!("tidal-{}", fx.prefix);
    let override_topic = format!("{}.override", fx.prefix);
    fx.create_topic(&override_topic, 1);
    let scale_toml = format!(
        r#"
[watch]
group = "{group}"
topics = ["{requests}"]
interval = "1s"
metrics_listen = ""
max_partitions = 3
override_topic = "{override_topic}"
[policies]
min_replicas = 1
max_replicas = 4
[policies.damping]
stabilization = "1s"
[actuator]
kind = "dry-run"
"#,
        requests = fx.requests()
    );
    let (mut scaler, log) = spawn_scaler(&fx, &scale_toml);
    let observer = observer_of(&group, &fx);
    let tidal_override = |value: &str| {
        let status = Command::new(env!("CARGO_BIN_EXE_tidal"))
            .args(["scale", "override", "--brokers", &brokers(), "--topic", &override_topic])
            .args(if value == "clear" { vec!["--clear"] } else { vec![value] })
            .status()
            .unwrap();
        assert!(status.success());
    };
    std::thread::sleep(Duration::from_secs(2));
    tidal_override("3");
    wait_for("three partitions", Duration::from_secs(30), || {
        observer.snapshot(0.0).is_ok_and(|s| s.partitions.len() == 3)
    });
    tidal_override("clear");
    wait_for("the override to be dropped", Duration::from_secs(30), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("from=3") && t.contains("to=1"))
    });
    let status = terminate(&mut scaler, Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("policy=\"override\""), "{text}");
    assert!(text.contains("added partitions"), "{text}");
    assert!(status.is_some_and(|s| s.success()), "scaler exit {status:?}");
}
