//! The scaler against a real Kafka broker (scripts/test.sh starts one): a burst of sentiment
//! requests makes `tidal scale run` start more `tidal serve` processes, the lag drains, every
//! request is answered exactly once, and the replicas return to the minimum; a stalled group is
//! reported and not scaled up; signal rules raise the floor before any lag.
#![cfg(feature = "broker-tests")]

mod common;

use std::time::{Duration, Instant};

use common::{brokers, terminate, Fixture, Reader};
use tidal::scale::observe::Observer;

/// Watches `group` on the fixture's request topic, as the scaler does.
fn observer_of(group: &str, fx: &Fixture) -> Observer {
    let kafka = tidal::config::KafkaConfig { brokers: brokers(), ..Default::default() };
    Observer::new(&kafka, group, vec![fx.requests()], "").unwrap()
}

fn members(observer: &Observer) -> u32 {
    observer.snapshot(0.0).map(|s| s.consumers).unwrap_or(0)
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
fn a_burst_scales_out_drains_exactly_once_and_scales_back() {
    let fx = Fixture::new("scale", 4, "");
    let group = format!("tidal-{}", fx.prefix);
    let notified = fx.dir.path().join("notified.jsonl");
    let scale_toml = common::scale_toml(
        &group,
        &fx.requests(),
        &format!("decisions_topic = \"{}.decisions\"", fx.prefix),
        &format!(
            r#"[policies]
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
serve_args = ["--config", "{}", "--no-pin"]
[notify]
command = ["sh", "-c", "cat >> {}; echo >> {}"]
"#,
            fx.config_path.display(),
            notified.display(),
            notified.display()
        ),
    );
    fx.create_topic(&format!("{}.decisions", fx.prefix), 1);
    let (mut scaler, log) = fx.spawn_scaler(&scale_toml);
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

    common::assert_exactly_once(&committed, &requests);
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
    // The same decisions were given to the notify command, one JSON object each.
    let lines = std::fs::read_to_string(&notified).unwrap_or_default();
    let told: Vec<(u64, u64)> = lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON decision"))
        .map(|d| (d["from"].as_u64().unwrap(), d["to"].as_u64().unwrap()))
        .collect();
    assert!(told.contains(&(1, 2)) && told.contains(&(2, 1)), "notified: {told:?}");
    wait_for("the scaler's processors to leave", Duration::from_secs(30), || members(&observer) == 0);
}

#[test]
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
    let policies = r#"[policies]
min_replicas = 1
max_replicas = 4
rate = { per_replica_rate = 1000.0 }
[policies.lag]
lag_threshold = 1000
[policies.damping]
stall_after = 2
[actuator]
kind = "dry-run"
"#;
    let scale_toml = common::scale_toml(&group, &fx.requests(), "", policies);
    let (mut scaler, log) = fx.spawn_scaler(&scale_toml);
    // The load starts once the scaler watches: its first observations see the stall coming (a
    // scaler that first looks at an already large lag has no evidence of a stall yet).
    wait_for("the scaler to watch", Duration::from_secs(30), || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("scaler watching")
    });
    // Load arrives steadily; nothing is processed. By the end the lag (~3,000) asks for 3 replicas.
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(15) {
        let batch: Vec<(String, String)> = (0..100).map(|i| (format!("x{n}-{i}"), "stuck".to_string())).collect();
        fx.produce_texts(&batch);
        n += 1;
        // Stays in the group, commits nothing; the sleep paces the load at ~200 records/s (a
        // poll returns at once while records are there).
        stuck.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = terminate(&mut scaler, Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("stalled"), "the stall is reported:\n{text}");
    assert!(!text.contains("to=2") && !text.contains("to=3") && !text.contains("to=4"), "no scale-up:\n{text}");
    assert!(status.is_some_and(|s| s.success()), "scaler exit {status:?}");
}

#[test]
fn an_override_record_wins_and_grows_partitions_when_allowed() {
    let fx = Fixture::new("override", 1, "");
    let group = format!("tidal-{}", fx.prefix);
    let override_topic = format!("{}.override", fx.prefix);
    fx.create_topic(&override_topic, 1);
    let watch = format!("max_partitions = 3\noverride_topic = \"{override_topic}\"");
    let policies = r#"[policies]
min_replicas = 1
max_replicas = 4
[policies.damping]
stabilization = "1s"
[actuator]
kind = "dry-run"
"#;
    let scale_toml = common::scale_toml(&group, &fx.requests(), &watch, policies);
    let (mut scaler, log) = fx.spawn_scaler(&scale_toml);
    let observer = observer_of(&group, &fx);
    let tidal_override = |value: &str| {
        let status = common::tidal()
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

#[test]
fn replicas_with_two_workers_are_counted_as_processes_not_consumers() {
    // 4 partitions, 2 workers per replica: at most 2 replicas can all own partitions. Counting
    // consumers as replicas would start a third and a fourth whose consumers sit idle.
    let fx = Fixture::new("scale2w", 4, "");
    let group = format!("tidal-{}", fx.prefix);
    let policies = format!(
        r#"[policies]
min_replicas = 1
max_replicas = 4
[policies.lag]
lag_threshold = 300
[policies.damping]
stabilization = "6s"
[actuator]
kind = "local"
instance_prefix = "w2-"
metrics_base_port = 0
serve_args = ["--config", "{}", "--no-pin", "--workers", "2"]
"#,
        fx.config_path.display()
    );
    let (mut scaler, log) = fx.spawn_scaler(&common::scale_toml(&group, &fx.requests(), "", &policies));
    let observer = observer_of(&group, &fx);
    wait_for("the first replica's two consumers", Duration::from_secs(60), || members(&observer) >= 2);

    let requests: Vec<(String, String)> =
        (0..3000).map(|i| (format!("w{i}"), common::LABELLED[i % common::LABELLED.len()].0.to_string())).collect();
    fx.produce_texts(&requests);
    let mut committed = Reader::new(&fx.results(), true);
    let (mut most_replicas, mut most_consumers) = (0, 0);
    let until = Instant::now() + Duration::from_secs(240);
    while committed.records.len() < requests.len() && Instant::now() < until {
        committed.poll_for(Duration::from_millis(500));
        if let Ok(snapshot) = observer.snapshot(0.0) {
            most_replicas = most_replicas.max(snapshot.replicas);
            most_consumers = most_consumers.max(snapshot.consumers);
        }
    }
    committed.poll_for(Duration::from_secs(2));
    let status = terminate(&mut scaler, Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap();
    println!("lag 3,000 / threshold 300 → at most {most_replicas} replicas ({most_consumers} consumers)");
    common::assert_exactly_once(&committed, &requests);
    assert_eq!(most_replicas, 2, "scaled out to the 2 replicas 4 partitions feed, no more:\n{text}");
    assert_eq!(most_consumers, 4, "each replica brought its 2 consumers");
    assert!(!text.contains("to=3") && !text.contains("to=4"), "no decision beyond 2 replicas:\n{text}");
    assert!(status.is_some_and(|s| s.success()), "scaler exit {status:?}");
}

#[test]
fn the_observer_reads_committed_offsets_while_transactions_hold_new_ones() {
    // Every transaction stays open 12 s with the batch's offsets in it: the coordinator holds
    // offsets for the group nearly all the time, as under continuous exactly-once load. An
    // observer asking for stable offsets would wait out its 10 s timeout each time.
    let fx = Fixture::on_broker(
        "observe-eos",
        &brokers(),
        1,
        "transaction_timeout = \"60s\"\ncall_timeout = \"40s\"",
        "[batch]\nmax_batch = 5\n[faults]\ndelay_before_commit = \"12s\"\n",
    );
    let group = format!("tidal-{}", fx.prefix);
    let requests = common::requests(40);
    fx.produce_texts(&requests);
    let _server = fx.spawn("eos");
    let observer = observer_of(&group, &fx);
    let mut committed = Reader::new(&fx.results(), true);
    committed.read_until(5, Duration::from_secs(90)); // the first transaction committed
    let mut waits = Vec::new();
    let mut progress = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let snapshot = observer.snapshot(0.0).expect("an observation while a transaction holds offsets");
        waits.push(started.elapsed().as_secs_f64());
        progress.push(snapshot.partitions[0].committed.unwrap_or(0));
        std::thread::sleep(Duration::from_secs(3));
    }
    println!("observation times with transactions open: {waits:.2?} s; committed offsets seen {progress:?}");
    assert!(waits.iter().all(|&w| w < 3.0), "an observation waited on open transactions: {waits:?}");
    assert!(progress[0] >= 5 && progress.windows(2).all(|w| w[0] <= w[1]), "committed offsets: {progress:?}");
    assert!(progress.last() > progress.first(), "later commits are seen: {progress:?}");
}

#[test]
fn signals_raise_the_floor_before_any_lag_from_an_event_and_from_the_share_of_a_label_in_results() {
    let fx = Fixture::new("signals", 8, "");
    let group = format!("tidal-{}", fx.prefix);
    let events = format!("{}.match.events", fx.prefix);
    let decisions = format!("{}.decisions", fx.prefix);
    fx.create_topic(&events, 1);
    fx.create_topic(&decisions, 1);
    let _server = fx.spawn("a");
    // Lag and rate alone never ask for more than one replica here; only the signals do.
    let policies = format!(
        r#"[policies]
min_replicas = 1
max_replicas = 6
lag = {{ lag_threshold = 1000000 }}
[policies.damping]
stabilization = "1s"
[actuator]
kind = "dry-run"

[[signals]]
topic = "{results}"
share = {{ field = "result.label", equals = "positive", above = 0.6, window = "1m", min_records = 10 }}
min_replicas = 3
hold = "10m"

[[signals]]
topic = "{events}"
when = {{ field = "type", equals = "wicket" }}
min_replicas = 4
hold = "10m"
"#,
        results = fx.results()
    );
    let scale_toml =
        common::scale_toml(&group, &fx.requests(), &format!("decisions_topic = \"{decisions}\""), &policies);
    let (_scaler, log) = fx.spawn_scaler(&scale_toml);
    wait_for("the scaler to watch", Duration::from_secs(30), || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("scaler watching")
    });
    let mut decided = Reader::new(&decisions, false);
    let latest = |reader: &mut Reader| {
        reader.poll_for(Duration::from_millis(500));
        reader.records.last().map(|r| (r.json()["policy"].as_str().unwrap_or("").to_string(), r.json()["to"].as_u64()))
    };

    // Excited commentary through the sentiment model: 12 positive results of 12.
    let commentary: Vec<(String, String)> = (0..12)
        .map(|i| (format!("c{i}"), ["What a shot! Brilliant, simply magnificent.", "I loved this movie"][i % 2].into()))
        .collect();
    fx.produce_texts(&commentary);
    let mut results = Reader::new(&fx.results(), true);
    results.read_until(12, Duration::from_secs(60));
    assert!(results.records.iter().all(|r| r.json()["result"]["label"] == "positive"), "the commentary is positive");
    wait_for("the share rule to raise the floor to 3", Duration::from_secs(30), || {
        latest(&mut decided) == Some(("signal".into(), Some(3)))
    });
    let reason = decided.records.last().unwrap().json()["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("result.label") && reason.contains("12 of the last 12"), "{reason}");

    // The event rule: a wicket on the match feed (4 replicas: 2 of the 8 partitions each).
    fx.produce_with_headers_to(&events, &[(None, Some(br#"{"type": "wicket", "over": 31}"#.to_vec()), Vec::new())]);
    let until = Instant::now() + Duration::from_secs(30);
    while latest(&mut decided) != Some(("signal".into(), Some(4))) {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            Instant::now() < until,
            "the event rule did not raise the floor to 4: {:?}\n{text}",
            latest(&mut decided)
        );
    }
    let reason = decided.records.last().unwrap().json()["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("type = \"wicket\""), "{reason}");
    let lag = decided.records.last().unwrap().json()["lag"].as_u64().unwrap();
    assert!(lag < 100, "raised before any backlog: lag {lag}");
}

/// Seconds from `start` until the group has `count` members.
fn until_members(observer: &Observer, count: u32, start: Instant) -> f64 {
    wait_for("the processor to join", Duration::from_secs(120), || members(observer) >= count);
    start.elapsed().as_secs_f64()
}

#[test]
fn a_warm_standby_joins_on_sigusr1_without_loading_its_models() {
    let fx = Fixture::for_model("standby", "face-match", 2, "");
    let group = format!("tidal-{}", fx.prefix);
    let observer = observer_of(&group, &fx);
    let serve = |instance: &str, standby: bool| {
        let mut command = common::tidal();
        command.args(["serve", "--config"]).arg(&fx.config_path).args(["--instance", instance]);
        if standby {
            command.arg("--standby");
        }
        common::Server(command.env("TIDAL_LOG", "warn").spawn().unwrap())
    };
    // Cold: process start, models, join.
    let started = Instant::now();
    let mut cold = serve("cold", false);
    let cold_join = until_members(&observer, 1, started);
    terminate(&mut cold, Duration::from_secs(30));
    wait_for("the cold replica to leave", Duration::from_secs(30), || members(&observer) == 0);

    // Warm: started ahead, models loaded, outside the group until SIGUSR1.
    let warm = serve("warm", true);
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(members(&observer), 0, "a standby stays out of the group");
    let activated = Instant::now();
    let status = std::process::Command::new("kill").args(["-USR1", &warm.id().to_string()]).status().unwrap();
    assert!(status.success());
    let warm_join = until_members(&observer, 1, activated);
    eprintln!("scale-up of one face-match replica: cold {cold_join:.1} s (start, models, join), warm standby {warm_join:.1} s (SIGUSR1 to join)");
}
