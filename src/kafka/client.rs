//! Client options. Raw librdkafka keys live here and in the user's explicit pass-through map
//! (`kafka.librdkafka_options`), nowhere else.

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use crate::config::{GroupProtocol, KafkaConfig};
use crate::error::{Error, Result};

/// Keys that carry tidal's exactly-once guarantees: a pass-through option may not change them.
const PROTECTED_KEYS: &[&str] = &[
    "enable.auto.commit",
    "enable.auto.offset.store",
    "isolation.level",
    "transactional.id",
    "enable.idempotence",
    "group.id",
];

/// The largest record any tidal client sends or fetches (librdkafka's `message.max.bytes`). The
/// topics in `topics/` stay below it: requests 10 MiB, dead letters 12 MiB, results 1 MiB.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

fn base_config(kafka: &KafkaConfig, client_id: &str) -> Result<ClientConfig> {
    let mut config = ClientConfig::new();
    // Image requests (and their dead letters) can be several MiB; librdkafka's default is 1 MB.
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", client_id)
        .set("message.max.bytes", MAX_RECORD_BYTES.to_string());
    for (key, value) in &kafka.librdkafka_options {
        if PROTECTED_KEYS.contains(&key.as_str()) {
            return Err(Error::Config(format!(
                "kafka.librdkafka_options may not set '{key}': tidal sets it to keep results exactly-once"
            )));
        }
        config.set(key, value);
    }
    for (key, value) in kafka.security.librdkafka_properties()? {
        if kafka.librdkafka_options.contains_key(&key) {
            return Err(Error::Config(format!(
                "'{key}' is set both by [kafka.security] and kafka.librdkafka_options: keep one"
            )));
        }
        config.set(key, value);
    }
    Ok(config)
}

/// A worker's consumer: manual offsets (they commit inside the producer's transaction),
/// `read_committed`, incremental assignment (cooperative-sticky, or the broker's under KIP-848),
/// statistics every 5 s for the lag gauge.
pub fn consumer_config(kafka: &KafkaConfig, group_id: &str, client_id: &str) -> Result<ClientConfig> {
    let mut config = base_config(kafka, client_id)?;
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("max.poll.interval.ms", kafka.max_poll_interval.as_millis().to_string())
        // Partitions added while running are picked up within seconds, not librdkafka's 5 min.
        .set("topic.metadata.refresh.interval.ms", "10000")
        .set("statistics.interval.ms", "5000");
    match kafka.group_protocol {
        GroupProtocol::Classic => {
            config
                .set("session.timeout.ms", kafka.session_timeout.as_millis().to_string())
                .set("heartbeat.interval.ms", (kafka.session_timeout.as_millis() / 3).max(100).to_string())
                // Cooperative and balanced across topics: librdkafka's default (eager `range`)
                // gives each topic's partitions to the lowest member ids, so with 3 topics × 4
                // partitions and 6 members two sit idle, and every rebalance stops the whole group.
                .set("partition.assignment.strategy", "cooperative-sticky");
        }
        // The broker owns the session timeout, the heartbeat interval and the assignor here;
        // librdkafka refuses the classic keys.
        GroupProtocol::Consumer => {
            config.set("group.protocol", "consumer");
        }
    }
    Ok(config)
}

/// Bounds a worker consumer's prefetch queue by the worker's batch budget (`batch.max_bytes`).
/// `fetch.max.bytes` follows it (librdkafka keeps it at least `message.max.bytes`, 16 MiB, so
/// that the largest record can always be fetched).
pub fn bound_consumer_prefetch(config: &mut ClientConfig, budget_bytes: usize) {
    config.set("queued.max.messages.kbytes", (budget_bytes / 1024).max(1024).to_string());
}

/// For priority lanes, which pause and resume partitions: librdkafka fetches a resumed partition
/// once the fetch in flight returns, which an empty fetch does after `fetch.wait.max.ms` (500 ms
/// by default); 50 ms keeps a lane's turn from idling that long, at the cost of up to 20 empty
/// fetches a second per consumer and broker when there is nothing to read.
pub fn quick_resume(config: &mut ClientConfig) {
    config.set("fetch.wait.max.ms", "50");
}

/// Bounds a worker producer's queue: one batch's records (dead letters carry the request's
/// value, so up to the batch budget) plus the largest single record.
pub fn bound_producer_queue(config: &mut ClientConfig, budget_bytes: usize) {
    config.set("queue.buffering.max.kbytes", ((budget_bytes + MAX_RECORD_BYTES) / 1024).to_string());
}

/// A worker's transactional producer. `message.timeout.ms` stays within the transaction timeout,
/// as librdkafka requires.
pub fn transactional_producer_config(kafka: &KafkaConfig, transactional_id: &str) -> Result<ClientConfig> {
    let mut config = base_config(kafka, transactional_id)?;
    let txn_ms = kafka.transaction_timeout.as_millis();
    config
        .set("transactional.id", transactional_id)
        .set("enable.idempotence", "true")
        .set("transaction.timeout.ms", txn_ms.to_string())
        .set("message.timeout.ms", txn_ms.to_string())
        .set("linger.ms", "1");
    Ok(config)
}

/// A worker's producer in at-least-once mode: idempotent (no duplicates from its own retries),
/// not transactional.
pub fn idempotent_producer_config(kafka: &KafkaConfig, client_id: &str) -> Result<ClientConfig> {
    let mut config = base_config(kafka, client_id)?;
    config.set("enable.idempotence", "true").set("linger.ms", "1");
    Ok(config)
}

/// A reader of results for tools and tests: `read_committed`, no group commits.
pub fn read_committed_consumer_config(kafka: &KafkaConfig, group_id: &str) -> Result<ClientConfig> {
    let mut config = base_config(kafka, "tidal-reader")?;
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest");
    Ok(config)
}

/// A reader of a group's committed offsets from outside the group (the scaler, `tidal status`):
/// `read_uncommitted`, because librdkafka asks for *stable* offsets under `read_committed` and
/// the coordinator refuses those while a transaction holds offsets for the group, which under
/// continuous exactly-once load is nearly always. Committed offsets are what lag is measured
/// against either way.
pub fn group_offsets_reader_config(kafka: &KafkaConfig, group_id: &str) -> Result<ClientConfig> {
    let mut config = base_config(kafka, "tidal-observer")?;
    config.set("group.id", group_id).set("enable.auto.commit", "false").set("isolation.level", "read_uncommitted");
    Ok(config)
}

/// A plain idempotent producer for tools (`tidal produce`).
pub fn plain_producer_config(kafka: &KafkaConfig) -> Result<ClientConfig> {
    let mut config = base_config(kafka, "tidal-producer")?;
    config.set("enable.idempotence", "true").set("linger.ms", "5");
    Ok(config)
}

/// A short-lived client that only reads metadata (the start-up checks).
pub fn probe_config(kafka: &KafkaConfig) -> Result<ClientConfig> {
    let mut config = base_config(kafka, "tidal-probe")?;
    config.set("group.id", "tidal-probe");
    Ok(config)
}

/// An admin client.
pub fn admin_client(kafka: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>> {
    base_config(kafka, "tidal-admin")?.create().map_err(|e| Error::kafka("creating the admin client", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServeConfig;

    fn worker_consumer(toml: &str) -> ClientConfig {
        let cfg = ServeConfig::from_toml(toml).expect("config parses");
        consumer_config(&cfg.kafka, "g", "c").expect("consumer config")
    }

    #[test]
    fn the_group_protocol_chooses_who_assigns_and_who_times_sessions_out() {
        let classic = worker_consumer("");
        assert_eq!(classic.get("partition.assignment.strategy"), Some("cooperative-sticky"));
        assert_eq!(classic.get("session.timeout.ms"), Some("10000"));
        assert_eq!(classic.get("group.protocol"), None);
        let kip848 = worker_consumer("[kafka]\ngroup_protocol = \"consumer\"\n");
        assert_eq!(kip848.get("group.protocol"), Some("consumer"));
        // librdkafka refuses these with the consumer protocol: the broker owns them.
        for key in ["partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms"] {
            assert_eq!(kip848.get(key), None, "{key}");
        }
        assert!(ServeConfig::from_toml("[kafka]\ngroup_protocol = \"eager\"\n").is_err());
    }
}
