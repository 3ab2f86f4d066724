//! Secure operation against real brokers (scripts/kafka.sh's SASL and TLS modes): with SASL and
//! ACLs (StandardAuthorizer, SCRAM-SHA-512), a processor authenticating with a password from a
//! file serves nothing before the README's ACLs exist and everything, exactly once, after, and
//! the password never appears in its log; over TLS (a CA made for the test), a processor that
//! trusts that CA serves exactly once.
#![cfg(feature = "broker-tests")]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{tidal, OwnBroker, Reader, Server};

const PORT: u16 = 19692;

const TLS_PORT: u16 = 19792;

/// A serve config in `dir` for one unpinned sentiment worker on `port`, with `security` as the
/// body of `[kafka.security]`.
fn secure_config(dir: &std::path::Path, port: u16, security: &str) -> std::path::PathBuf {
    let config = dir.join("tidal.toml");
    let text = format!(
        "workers = 1\npin_workers = false\nmodels = [\"sentiment\"]\n[metrics]\nlisten = \"\"\n\
         [kafka]\nbrokers = \"127.0.0.1:{port}\"\nsession_timeout = \"6s\"\nstartup_timeout = \"120s\"\n[kafka.security]\n{security}\n"
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// Creates the declared topics through `brokers`' plaintext listener.
fn apply_topics(brokers: &str) {
    let applied = tidal().args(["topics", "apply", "--brokers", brokers]).output().unwrap();
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
}

/// Produces sentiment requests through `brokers`' plaintext listener.
fn produce_requests(brokers: &str, requests: &[(String, String)]) {
    let producer: rdkafka::producer::BaseProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    for (id, text) in requests {
        let value = serde_json::json!({"id": id, "text": text}).to_string();
        producer.send(rdkafka::producer::BaseRecord::to("tidal.requests.sentiment").key(id).payload(&value)).unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();
}

#[test]
fn a_processor_connected_over_tls_serves_exactly_once() {
    let tls = tempfile::tempdir().unwrap();
    let _broker = OwnBroker::start_with(TLS_PORT, &[("TIDAL_KAFKA_TLS_DIR", tls.path().to_str().unwrap())]);
    let plaintext = format!("127.0.0.1:{TLS_PORT}");
    apply_topics(&plaintext);
    let requests = common::requests(30);
    produce_requests(&plaintext, &requests);
    let ca = tls.path().join("ca.pem").display().to_string();
    let config = secure_config(tls.path(), TLS_PORT + 3, &format!("protocol = \"SSL\"\nca_location = {ca:?}"));
    let _server = Server(
        tidal()
            .args(["serve", "--config", config.to_str().unwrap(), "--instance", "tls"])
            .env("TIDAL_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut results = Reader::on(&plaintext, "tidal.results.sentiment", true);
    results.read_until(30, Duration::from_secs(120));
    results.poll_for(Duration::from_secs(2));
    common::assert_exactly_once(&results, &requests);
}

/// The README block after `<!-- checked: acls -->`, with `kafka-acls.sh` run from Kafka's jars.
fn readme_acls(brokers: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let marker = "<!-- checked: acls -->";
    let after = &readme[readme.find(marker).expect("README has the ACL block") + marker.len()..];
    let body = &after[after.find("```").unwrap()..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let block = &body[..body.find("\n```").unwrap()];
    let libs = tidal::install::kafka_libs();
    format!(
        "kafka-acls.sh() {{ java -cp '{}/*' org.apache.kafka.tools.AclCommand \"$@\" >/dev/null; }}\n{}",
        libs.display(),
        block.replace("localhost:9092", brokers)
    )
}

#[test]
fn a_scram_processor_serves_exactly_once_with_the_documented_acls_and_no_more() {
    let password = format!("pw-{}", std::process::id() * 7919);
    let _broker = OwnBroker::start_with(PORT, &[("TIDAL_KAFKA_SASL_USERS", &format!("tidal:{password}"))]);
    let plaintext = format!("127.0.0.1:{PORT}");
    apply_topics(&plaintext);
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("kafka-password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let security = format!(
        "protocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nusername = \"tidal\"\n\
         password = {{ file = {:?} }}",
        password_file.display().to_string()
    );
    let config = secure_config(dir.path(), PORT + 2, &security);

    // Requests in, through the super user's listener.
    let requests = common::requests(50);
    produce_requests(&plaintext, &requests);

    // No ACLs yet: authenticated, but allowed nothing.
    let log = dir.path().join("serve.log");
    let _server = Server(
        tidal()
            .args(["serve", "--config", config.to_str().unwrap(), "--instance", "secure"])
            .env("TIDAL_LOG", "info,librdkafka=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut results = Reader::on(&plaintext, "tidal.results.sentiment", true);
    results.poll_for(Duration::from_secs(8));
    assert!(results.records.is_empty(), "results written without any ACL");
    let before = std::fs::read_to_string(&log).unwrap();
    assert!(before.to_lowercase().contains("authoriz"), "the denial is logged:\n{before}");
    let doctor = || {
        let out = tidal().args(["doctor", "--config", config.to_str().unwrap()]).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, checklist) = doctor();
    assert_eq!(code, Some(1), "doctor must fail without ACLs:\n{checklist}");
    for topic in ["tidal.requests.sentiment", "tidal.results.sentiment", "tidal.dlq"] {
        assert!(checklist.contains(&format!("✗ topic {topic}: the brokers would not describe it")), "{checklist}");
    }
    assert!(
        checklist.contains("fix: kafka-acls.sh") && checklist.contains("--allow-principal User:tidal"),
        "{checklist}"
    );

    // The README's ACLs: everything is answered, exactly once.
    let acls = Command::new("bash").args(["-euo", "pipefail", "-c", &readme_acls(&plaintext)]).output().unwrap();
    assert!(acls.status.success(), "ACLs: {}", String::from_utf8_lossy(&acls.stderr));
    results.read_until(50, Duration::from_secs(120));
    results.poll_for(Duration::from_secs(2));
    common::assert_exactly_once(&results, &requests);
    // With the ACLs, doctor finds the group's and the topics' operations granted.
    let (_, checklist) = doctor();
    assert!(checklist.contains("✓ group tidal-tidal: this principal may read"), "{checklist}");
    assert!(checklist.contains("✓ topic tidal.requests.sentiment: this principal may read"), "{checklist}");
    assert!(checklist.contains("✓ topic tidal.results.sentiment: this principal may write"), "{checklist}");
    assert!(checklist.contains("✓ topic tidal.dlq: this principal may write"), "{checklist}");

    let whole_log = std::fs::read_to_string(&log).unwrap();
    assert!(!whole_log.contains(&password), "the password leaked into the log");
}
