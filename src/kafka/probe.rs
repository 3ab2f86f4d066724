//! First contact with the cluster, before a command does its job: are the brokers reachable, and
//! do the topics it needs exist? librdkafka retries forever and says little (a closed port shows
//! as "Timed out" thirty seconds later); these checks answer in a few seconds, in one line, with
//! the address, the cause and the fix, the way kcat and kafka-topics do.

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaRespErr;

use crate::config::KafkaConfig;
use crate::error::{Error, Result};

/// How long one TCP connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What the cluster said about itself.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Brokers in the metadata.
    pub brokers: usize,
    /// Every topic and its partition count.
    pub topics: BTreeMap<String, usize>,
}

/// Why one bootstrap address cannot be reached over TCP, or `None` when it can.
pub fn tcp_problem(address: &str) -> Option<String> {
    let address = address.trim();
    let address = address.split_once("://").map_or(address, |(_, rest)| rest);
    let resolved: Vec<_> = match address.to_socket_addrs() {
        Ok(addresses) => addresses.collect(),
        Err(e) => return Some(format!("{address}: cannot resolve the host ({e})")),
    };
    let mut last = None;
    for socket in &resolved {
        match TcpStream::connect_timeout(socket, CONNECT_TIMEOUT) {
            Ok(_) => return None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Some(format!("{address}: connection refused (nothing listens there)"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = Some(format!("{address}: no answer within {CONNECT_TIMEOUT:?} (firewall, or a wrong address)"));
            }
            Err(e) => last = Some(format!("{address}: {e}")),
        }
    }
    last.or_else(|| Some(format!("{address}: the host has no address")))
}

/// Connects to the cluster and reads its metadata, trying for up to `timeout`. The error names
/// the addresses, the cause and what to check.
pub fn reach(kafka: &KafkaConfig, timeout: Duration) -> Result<Cluster> {
    let deadline = Instant::now() + timeout;
    let addresses: Vec<&str> = kafka.brokers.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
    loop {
        let problems: Vec<String> = addresses.iter().filter_map(|a| tcp_problem(a)).collect();
        if problems.len() < addresses.len() {
            match metadata(kafka, deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(2))) {
                Ok(cluster) => return Ok(cluster),
                Err(cause) if Instant::now() >= deadline => {
                    return Err(Error::Unreachable(format!(
                        "cannot talk to Kafka at {} (the port answers, but {cause}); check the protocol and \
                         credentials in [kafka.security] ({})",
                        kafka.brokers,
                        kafka.security.protocol.as_deref().unwrap_or("PLAINTEXT")
                    )))
                }
                Err(_) => {}
            }
        } else if Instant::now() >= deadline {
            return Err(Error::Unreachable(format!(
                "cannot reach Kafka: {}. Is a broker running there? Set the address with --brokers, \
                 TIDAL_BROKERS or kafka.brokers",
                problems.join("; ")
            )));
        }
        std::thread::sleep(Duration::from_millis(500).min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// The cluster's metadata, or librdkafka's reason (once).
fn metadata(kafka: &KafkaConfig, timeout: Duration) -> std::result::Result<Cluster, String> {
    let consumer: BaseConsumer =
        super::client::probe_config(kafka).map_err(|e| e.to_string())?.create().map_err(|e| e.to_string())?;
    let metadata = consumer.fetch_metadata(None, timeout).map_err(|e| e.to_string())?;
    let topics = metadata.topics().iter().map(|t| (t.name().to_string(), t.partitions().len())).collect();
    Ok(Cluster { brokers: metadata.brokers().len(), topics })
}

impl Cluster {
    /// Fails when any of `topics` is missing, or not visible to this client's principal,
    /// naming them and the fix.
    pub fn require(&self, kafka: &KafkaConfig, topics: &[String]) -> Result<()> {
        let absent: Vec<&str> =
            topics.iter().filter(|t| !self.topics.contains_key(t.as_str())).map(String::as_str).collect();
        if absent.is_empty() {
            return Ok(());
        }
        // A cluster-wide listing leaves out the topics the principal may not describe: ask for
        // each by name to tell "not there" from "not allowed".
        let denied: Vec<&str> = absent.iter().copied().filter(|t| is_denied(kafka, t)).collect();
        let missing: Vec<&str> = absent.iter().copied().filter(|t| !denied.contains(t)).collect();
        Err(Error::MissingTopics(explain(&kafka.brokers, &missing, &denied)))
    }
}

/// Whether the brokers refuse to describe `topic` to this client (ACLs).
fn is_denied(kafka: &KafkaConfig, topic: &str) -> bool {
    let Ok(consumer) = super::client::probe_config(kafka)
        .and_then(|c| c.create::<BaseConsumer>().map_err(|e| Error::kafka("creating the probe", e)))
    else {
        return false;
    };
    let denied = Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .is_ok_and(|m| m.topics().iter().any(|t| t.error() == denied))
}

fn explain(brokers: &str, missing: &[&str], denied: &[&str]) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        let (noun, pronoun) = if missing.len() == 1 { ("topic", "it") } else { ("topics", "them") };
        parts.push(format!(
            "{noun} {} not found on {brokers}: create {pronoun} with `tidal topics apply --brokers {brokers}` \
             (the declared topics), or check the topic names in the configuration",
            missing.join(", ")
        ));
    }
    if !denied.is_empty() {
        parts.push(format!(
            "not authorized to describe {} on {brokers}: grant this principal the ACLs of the README's Security \
             section (Describe, Read, Write on the topics; Read on the group; the transactional ids)",
            denied.join(", ")
        ));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_and_an_unknown_host_say_so() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let refused = tcp_problem(&format!("127.0.0.1:{port}")).unwrap();
        assert!(refused.contains("connection refused"), "{refused}");
        let unknown = tcp_problem("no-such-host.invalid:9092").unwrap();
        assert!(unknown.contains("cannot resolve"), "{unknown}");
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(tcp_problem(&open.local_addr().unwrap().to_string()), None);
    }

    #[test]
    fn missing_and_denied_topics_are_named_with_the_fix() {
        let err = explain("k:9092", &["b", "c"], &[]);
        assert!(err.contains("topics b, c not found on k:9092"), "{err}");
        assert!(err.contains("tidal topics apply --brokers k:9092"), "{err}");
        let err = explain("k:9092", &["b"], &["d"]);
        assert!(err.contains("topic b not found") && err.contains("not authorized to describe d"), "{err}");
        let present = Cluster { brokers: 1, topics: [("a".to_string(), 1)].into() };
        assert!(present.require(&KafkaConfig::default(), &["a".into()]).is_ok());
    }
}
