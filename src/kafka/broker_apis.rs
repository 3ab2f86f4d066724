//! What each broker speaks: the Kafka APIs and version ranges it announced (ApiVersions), and
//! what that means for tidal — which Kafka release line it is, whether it has transactions, and
//! whether it serves the KIP-848 consumer group protocol.
//!
//! Why this way: librdkafka sends ApiVersions on every connection but exposes the answer only in
//! its `feature` debug lines ("ApiKey Fetch (1) Versions 4..18"). Reading them keeps the probe on
//! the very connection `serve` makes — same listener, TLS and SASL — where a hand-made ApiVersions
//! request would have to redo the security handshake. The release is inferred from API ranges,
//! the way `kafka-broker-api-versions.sh` output is read: an API a release added or removed
//! dates it, so the label is a lower bound ("Kafka 4.x"), never an exact patch level.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use crate::config::KafkaConfig;
use crate::error::{Error, Result};

/// Kafka API keys tidal cares about.
const FETCH: i16 = 1;
const ADD_OFFSETS_TO_TXN: i16 = 25;
const END_TXN: i16 = 26;
const TXN_OFFSET_COMMIT: i16 = 28;
const DESCRIBE_CLUSTER: i16 = 60;
const CONSUMER_GROUP_HEARTBEAT: i16 = 68;

/// One broker's API version ranges, by API key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerApis {
    /// `host:port` as the metadata names the broker.
    pub address: String,
    pub versions: BTreeMap<i16, (i16, i16)>,
}

impl BrokerApis {
    fn has(&self, key: i16) -> bool {
        self.versions.contains_key(&key)
    }

    /// The release line these APIs date the broker to: Kafka 4.0 dropped Fetch v0–v3 (KIP-896;
    /// it kept Produce v0–v2 for older clients), 2.8 added DescribeCluster (KIP-700), 0.11 the
    /// transactional APIs.
    pub fn release(&self) -> &'static str {
        let fetch_min = self.versions.get(&FETCH).map_or(0, |&(min, _)| min);
        if fetch_min >= 4 {
            "Kafka 4.x or later"
        } else if self.has(DESCRIBE_CLUSTER) {
            "Kafka 2.8–3.x"
        } else if self.has_transactions() {
            "Kafka 0.11–2.7"
        } else {
            "Kafka older than 0.11"
        }
    }

    /// Exactly-once needs the transactional APIs (Kafka ≥ 0.11).
    pub fn has_transactions(&self) -> bool {
        [ADD_OFFSETS_TO_TXN, END_TXN, TXN_OFFSET_COMMIT].iter().all(|&k| self.has(k))
    }

    /// `kafka.group_protocol = "consumer"` needs ConsumerGroupHeartbeat (KIP-848).
    pub fn has_consumer_protocol(&self) -> bool {
        self.has(CONSUMER_GROUP_HEARTBEAT)
    }
}

/// Parses one of librdkafka's `feature` debug lines, "... ApiKey Produce (0) Versions 3..12",
/// into (key, (min, max)).
fn parse_api_line(message: &str) -> Option<(i16, (i16, i16))> {
    let rest = &message[message.find("ApiKey ")?..];
    let key = rest[rest.find('(')? + 1..rest.find(')')?].trim().parse().ok()?;
    let versions = rest[rest.find("Versions ")? + "Versions ".len()..].trim();
    let (min, max) = versions.split_once("..")?;
    Some((key, (min.trim().parse().ok()?, max.trim().parse().ok()?)))
}

/// Collects the ApiVersions answer from the `feature` debug lines.
#[derive(Default)]
struct ApiVersionsLog {
    versions: Mutex<BTreeMap<i16, (i16, i16)>>,
}

impl ClientContext for ApiVersionsLog {
    fn log(&self, _level: RDKafkaLogLevel, facility: &str, message: &str) {
        if facility != "APIVERSION" {
            return;
        }
        if let Some((key, range)) = parse_api_line(message) {
            if let Ok(mut versions) = self.versions.lock() {
                versions.insert(key, range);
            }
        }
    }
}

impl ConsumerContext for ApiVersionsLog {}

/// Connects to each broker in the cluster's metadata and reads the APIs it announces.
pub fn describe(kafka: &KafkaConfig, timeout: Duration) -> Result<Vec<BrokerApis>> {
    let bootstrap: BaseConsumer =
        super::client::probe_config(kafka)?.create().map_err(|e| Error::kafka("creating the probe", e))?;
    let metadata =
        bootstrap.fetch_metadata(None, timeout).map_err(|e| Error::kafka("reading the cluster's metadata", e))?;
    let mut brokers = Vec::new();
    for broker in metadata.brokers() {
        let address = format!("{}:{}", broker.host(), broker.port());
        let mut config = super::client::probe_config(kafka)?;
        config.set("bootstrap.servers", &address).set("debug", "feature").set_log_level(RDKafkaLogLevel::Debug);
        let consumer: BaseConsumer<ApiVersionsLog> =
            config.create_with_context(ApiVersionsLog::default()).map_err(|e| Error::kafka("creating the probe", e))?;
        consumer.fetch_metadata(None, timeout).map_err(|e| Error::kafka(format!("connecting to {address}"), e))?;
        // rdkafka hands librdkafka's log lines to the context when the client is polled.
        let deadline = Instant::now() + timeout;
        let versions = loop {
            let _ = consumer.poll(Duration::from_millis(100));
            let versions = consumer.context().versions.lock().map(|v| v.clone()).unwrap_or_default();
            if !versions.is_empty() {
                break versions;
            }
            if Instant::now() >= deadline {
                return Err(Error::Unreachable(format!(
                    "{address} answered, but its API versions were not seen within {timeout:?}"
                )));
            }
        };
        brokers.push(BrokerApis { address, versions });
    }
    Ok(brokers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(apis: &[(i16, (i16, i16))]) -> BrokerApis {
        BrokerApis { address: "b:9092".into(), versions: apis.iter().copied().collect() }
    }

    #[test]
    fn librdkafkas_feature_lines_are_read() {
        let line = "[thrd:127.0.0.1:9092/bootstrap]: 127.0.0.1:9092/1:   ApiKey EndTxn (26) Versions 0..5";
        assert_eq!(parse_api_line(line), Some((26, (0, 5))));
        assert_eq!(parse_api_line("127.0.0.1:9092/1: Broker API support:"), None);
        assert_eq!(parse_api_line("ApiKey Fetch (x) Versions 0..9"), None);
    }

    #[test]
    fn the_release_line_and_capabilities_follow_the_apis() {
        let txn = [(ADD_OFFSETS_TO_TXN, (0, 4)), (END_TXN, (0, 5)), (TXN_OFFSET_COMMIT, (0, 5))];
        // As Kafka 4.1.1 announces them (kafka-broker-api-versions.sh).
        let kafka4 = broker(
            &[&[(FETCH, (4, 18)), (DESCRIBE_CLUSTER, (0, 2)), (CONSUMER_GROUP_HEARTBEAT, (0, 1))], &txn[..]].concat(),
        );
        assert_eq!(kafka4.release(), "Kafka 4.x or later");
        assert!(kafka4.has_transactions() && kafka4.has_consumer_protocol());
        let kafka3 = broker(&[&[(FETCH, (0, 13)), (DESCRIBE_CLUSTER, (0, 1))], &txn[..]].concat());
        assert_eq!(kafka3.release(), "Kafka 2.8–3.x");
        assert!(kafka3.has_transactions() && !kafka3.has_consumer_protocol());
        assert_eq!(broker(&[&[(FETCH, (0, 12))], &txn[..]].concat()).release(), "Kafka 0.11–2.7");
        let ancient = broker(&[(FETCH, (0, 2))]);
        assert_eq!(ancient.release(), "Kafka older than 0.11");
        assert!(!ancient.has_transactions());
    }
}
