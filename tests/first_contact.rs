//! First contact, as a newcomer meets it: a broker that is not running, a host that does not
//! exist, topics never created. Every command says so in one line within seconds, with the
//! address, the cause and the fix, and exits 1; `tidal serve` gives up after
//! `kafka.startup_timeout` and stops at once on SIGTERM while it waits.

mod common;

use std::time::{Duration, Instant};

use common::tidal;

/// A local port with nothing listening.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    address
}

/// A serve configuration for one sentiment worker whose broker address is a closed port.
fn serve_config_on_a_closed_port(dir: &std::path::Path, startup_timeout: &str) -> std::path::PathBuf {
    let config = dir.join("tidal.toml");
    let text = format!(
        "models = [\"sentiment\"]\nworkers = 1\n[metrics]\nlisten = \"\"\n[kafka]\nbrokers = \"{}\"\n\
         startup_timeout = \"{startup_timeout}\"\n",
        closed_port()
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// Runs `tidal args...`, returning (exit code, stderr, seconds taken).
fn run(args: &[&str]) -> (Option<i32>, String, f64) {
    let started = Instant::now();
    let out = tidal().args(args).stdin(std::process::Stdio::null()).output().expect("run tidal");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), started.elapsed().as_secs_f64())
}

#[test]
fn every_command_says_in_one_line_that_kafka_is_not_reachable() {
    let address = closed_port();
    for args in [
        vec!["produce", "--topic", "tidal.requests.sentiment"],
        vec!["consume", "--topic", "tidal.results.sentiment"],
        vec!["status"],
        vec!["topics", "apply"],
        vec!["scale", "run"],
        vec!["gateway", "--metrics-listen", ""],
    ] {
        let mut args = args.clone();
        args.extend(["--brokers", &address]);
        let (code, stderr, took) = run(&args);
        assert_eq!(code, Some(1), "{args:?} must fail: {stderr}");
        let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(error.len(), 1, "{args:?}: one error line:\n{stderr}");
        assert!(
            error[0].contains(&format!("{address}: connection refused")) && error[0].contains("--brokers"),
            "{args:?}: address, cause and fix:\n{stderr}"
        );
        assert!(took < 15.0, "{args:?} took {took:.1} s");
    }
    let (code, stderr, _) = run(&["status", "--brokers", "no-such-host.invalid:9092"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no-such-host.invalid:9092: cannot resolve the host"), "{stderr}");
}

#[test]
fn serve_gives_up_after_the_startup_timeout_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = serve_config_on_a_closed_port(dir.path(), "4s");
    let (code, stderr, took) = run(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("connection refused") && stderr.contains("kafka.startup_timeout"), "{stderr}");
    assert!((3.0..15.0).contains(&took), "gave up after {took:.1} s (startup_timeout 4 s)");

    // While it waits, SIGTERM stops it at once.
    let long = std::fs::read_to_string(&config).unwrap().replace("\"4s\"", "\"5m\"");
    std::fs::write(&config, long).unwrap();
    let mut child = common::Server(
        tidal()
            .args(["serve", "--config", config.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    let status = common::terminate(&mut child, Duration::from_secs(20));
    assert!(status.is_some(), "serve did not stop on SIGTERM while waiting for Kafka");
    assert!(started.elapsed() < Duration::from_secs(5), "stopped after {:?}", started.elapsed());
}

#[cfg(feature = "broker-tests")]
#[test]
fn missing_topics_are_named_with_the_command_that_creates_them() {
    let brokers = common::brokers();
    let topic = format!("never-created-{}", std::process::id());
    for args in [vec!["produce", "--topic", &topic], vec!["consume", "--topic", &topic]] {
        let mut args = args.clone();
        args.extend(["--brokers", &brokers]);
        let (code, stderr, took) = run(&args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("topic {topic} not found on {brokers}")), "{stderr}");
        assert!(stderr.contains("tidal topics apply"), "{stderr}");
        assert!(took < 15.0, "{args:?} took {took:.1} s");
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tidal.toml");
    let text = format!(
        "models = [\"sentiment\"]\nworkers = 1\n[metrics]\nlisten = \"\"\n[topics]\nrequest_prefix = \"{topic}.requests.\"\n\
         result_prefix = \"{topic}.results.\"\ndead_letter = \"{topic}.dlq\"\n[kafka]\nbrokers = \"{brokers}\"\nstartup_timeout = \"3s\"\n"
    );
    std::fs::write(&config, text).unwrap();
    let (code, stderr, _) = run(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{topic}.requests.sentiment")) && stderr.contains("tidal topics apply"),
        "{stderr}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = serve_config_on_a_closed_port(dir.path(), "3s");
    let (code, stderr, _) = run(&["serve", "--log-format", "json", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    let lines: Vec<serde_json::Value> =
        stderr.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert!(!lines.is_empty(), "serve logs its wait for Kafka as JSON:\n{stderr}");
    for line in &lines {
        assert!(line["level"].is_string() && line["timestamp"].is_string() && line["message"].is_string(), "{line}");
    }
    assert!(lines
        .iter()
        .any(|l| l["level"] == "WARN" && l["message"].as_str().unwrap().contains("connection refused")));
}

#[cfg(feature = "broker-tests")]
#[test]
fn doctor_passes_a_ready_set_up_and_names_the_fix_for_each_failure() {
    let fx = common::Fixture::new("doctor", 1, "");
    let (code, stdout, stderr) = {
        let out = tidal().args(["doctor", "--config"]).arg(&fx.config_path).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "a ready set-up passes:\n{stdout}{stderr}");
    // The test broker is Kafka 4.1: its release line and transactions, from the APIs it announces.
    assert!(stdout.contains("✓ 1 broker(s) speak Kafka 4.x or later"), "{stdout}");
    assert!(stdout.contains("✓ brokers support transactions"), "{stdout}");
    assert!(stdout.contains(&format!("✓ topic {} present", fx.requests())), "{stdout}");
    assert!(stdout.contains("✓ model sentiment") && stdout.contains("answers its sample"), "{stdout}");
    // No authorizer on the test broker: every operation is granted.
    assert!(stdout.contains(&format!("✓ topic {}: this principal may read", fx.requests())), "{stdout}");
    assert!(stdout.contains(&format!("✓ topic {}: this principal may write", fx.results())), "{stdout}");
    assert!(stdout.contains(&format!("✓ topic {}: this principal may write", fx.dlq())), "{stdout}");

    // The same configuration against topics that were never created, and a busy metrics port.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = std::fs::read_to_string(&fx.config_path).unwrap().replace(&fx.prefix, "never-created");
    let path = fx.dir.path().join("broken.toml");
    std::fs::write(&path, config).unwrap();
    let out = tidal()
        .args(["doctor", "--config"])
        .arg(&path)
        .args(["--metrics-listen", &busy.local_addr().unwrap().to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("✗ topic never-created.requests.sentiment is missing"), "{stdout}");
    assert!(stdout.contains("fix: tidal topics apply --brokers"), "{stdout}");
    assert!(stdout.contains("✗ metrics port"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("checks failed"));
}
