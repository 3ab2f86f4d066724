//! `tidal scale run`: every `interval`, observe the group, decide, grow partitions when allowed
//! and needed, act, and explain. Decisions are logged with their reason and exported as metrics.
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminOptions, NewPartitions};
use rdkafka::producer::Producer;
use serde::Deserialize;

use super::actuator;
use super::decide::Scaler;
use super::manual;
use super::notify;
use super::observe::{Observer, Snapshot};
use super::policy::Observation;
use super::signals::{SignalReader, Signals};
use super::ScaleConfig;
use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::kafka;
use crate::shutdown::Shutdown;

/// What to watch and how often.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// The processors' consumer group (`tidal-<app>`).
    pub group: String,
    /// Request topics; empty → every topic starting with `request_prefix`.
    pub topics: Vec<String>,
    pub request_prefix: String,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Partitions may be added up to this many per topic when more consumers are wanted than
    /// there are partitions (0: never add). Partitions are never removed.
    pub max_partitions: u32,
    /// A file holding a replica count overrides every policy while it exists.
    pub override_file: Option<PathBuf>,
    /// Prometheus endpoint of the scaler ("" disables).
    pub metrics_listen: String,
    /// When set, every change of replica count is also written to this topic as JSON.
    pub decisions_topic: Option<String>,
    /// When set, the latest record of this topic (a number, or `clear`) overrides the policies;
    /// `tidal scale override --topic` writes it. Takes precedence over `override_file`.
    pub override_topic: Option<String>,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            group: "tidal-tidal".into(),
            topics: Vec::new(),
            request_prefix: "tidal.requests.".into(),
            interval: Duration::from_secs(5),
            max_partitions: 0,
            override_file: None,
            metrics_listen: "127.0.0.1:9465".into(),
            decisions_topic: None,
            override_topic: None,
        }
    }
}

/// The partitions of `topic`, or an error naming the `watch.<key>` that points at a missing topic.
pub(super) fn require_topic<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    key: &str,
    shipped: &str,
) -> Result<Vec<i32>> {
    let partitions = topic_partitions(client, topic)?;
    if partitions.is_empty() {
        return Err(Error::Config(format!(
            "watch.{key} {topic} does not exist: create it (tidal topics apply creates {shipped}) or unset {key}"
        )));
    }
    Ok(partitions)
}

/// The partitions of `topic` (none when it does not exist).
pub(super) fn topic_partitions<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
) -> Result<Vec<i32>> {
    let metadata = client
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| Error::kafka(format!("looking up {topic}"), e))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

fn seconds_of_day() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| (d.as_secs() % 86_400) as u32)
}

/// Runs until `shutdown`; stops what the local actuator started on the way out.
pub async fn run(config: &ScaleConfig, kafka_config: &KafkaConfig, shutdown: &Shutdown) -> Result<()> {
    let watch = &config.watch;
    let observer = Observer::new(kafka_config, &watch.group, watch.topics.clone(), &watch.request_prefix)?;
    let admin = kafka::admin_client(kafka_config)?;
    let mut actuator = actuator::build(&config.actuator)?;
    let decisions: Option<rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>> =
        match &watch.decisions_topic {
            Some(topic) => {
                let producer: rdkafka::producer::ThreadedProducer<_> = kafka::plain_producer_config(kafka_config)?
                    .create()
                    .map_err(|e| Error::kafka("creating the decisions producer", e))?;
                require_topic(producer.client(), topic, "decisions_topic", "tidal.scale.decisions")?;
                Some(producer)
            }
            None => None,
        };
    let mut scaler = Scaler::new(config.policies.clone());
    let started = Instant::now();
    let mut previous: Option<Snapshot> = None;
    let mut replicas = actuator.current().unwrap_or(0);
    // A scale-up under way: (decided at, replicas wanted), until the group has that many members.
    let mut pending_up: Option<(f64, u32)> = None;
    let mut signals = Signals::new(config.signals.clone());
    let signal_reader =
        if config.signals.is_empty() { None } else { Some(SignalReader::new(kafka_config, &signals.topics())?) };
    let mut override_reader = match &watch.override_topic {
        Some(topic) => Some(manual::OverrideReader::new(kafka_config, topic)?),
        None => None,
    };
    tracing::info!(group = %watch.group, topics = ?observer.topics(), actuator = ?config.actuator, "scaler watching");
    if replicas < config.policies.min_replicas {
        actuator.set(config.policies.min_replicas)?;
        replicas = config.policies.min_replicas;
    }
    let result = loop {
        if shutdown.is_requested() {
            break Ok(());
        }
        let now = started.elapsed().as_secs_f64();
        let snapshot = match observer.snapshot(now) {
            Ok(s) => s,
            Err(e) => {
                count_error("observe");
                tracing::warn!(error = %e, "cannot observe the group; retrying at the next interval");
                let _ = tokio::time::timeout(watch.interval, shutdown.requested()).await;
                continue;
            }
        };
        let (ingest, processing) = previous.as_ref().map_or((0.0, 0.0), |p| snapshot.rates_since(p));
        let partitions = partitions_per_topic(&snapshot);
        let observation = Observation {
            at: now,
            total_lag: snapshot.total_lag(),
            ingest_rate: ingest,
            processing_rate: processing,
            partitions,
            max_partitions: watch.max_partitions,
            consumers: snapshot.consumers,
            serving: snapshot.replicas,
            replicas,
        };
        if let Some((since, target)) = pending_up {
            // Done when the replicas that can get partitions are all ready — every worker of
            // each in the group (a replica with W workers brings W members).
            if snapshot.ready_replicas >= target.min(observation.useful_replicas().max(1)) {
                scaler.record_startup(now - since);
                metrics::gauge!("tidal_scale_startup_seconds").set(now - since);
                pending_up = None;
            }
        }
        let forced = override_reader
            .as_mut()
            .and_then(manual::OverrideReader::latest)
            .or_else(|| manual::read_file(watch.override_file.as_deref()));
        if let Some(reader) = &signal_reader {
            reader.feed(&mut signals, now);
        }
        let decision = scaler.decide_with_signal(&observation, seconds_of_day(), forced, signals.floor(now));
        if decision.stalled {
            tracing::error!(
                lag = observation.total_lag,
                consumers = observation.consumers,
                "the group is stalled: lag grows and nothing is committed (a wedged processor, or one that cannot \
                 commit); more replicas would not help. Decision: {}",
                decision.reason
            );
        }
        if decision.replicas > observation.useful_replicas() && watch.max_partitions > partitions {
            // One partition per consumer the decided replicas will run.
            let wanted = decision.replicas.saturating_mul(observation.consumers_per_replica());
            let target = wanted.min(watch.max_partitions);
            if let Err(e) = grow_partitions(&admin, observer.topics(), target).await {
                count_error("grow_partitions");
                tracing::error!(error = %e, "could not add partitions; will retry at the next interval");
            }
        }
        if decision.replicas != replicas {
            tracing::info!(
                from = replicas,
                to = decision.replicas,
                policy = decision.policy,
                lag = observation.total_lag,
                ingest_rate = format!("{ingest:.1}"),
                processing_rate = format!("{processing:.1}"),
                "scaling: {}",
                decision.reason
            );
            if let Err(e) = actuator.set(decision.replicas) {
                count_error("actuate");
                tracing::error!(error = %e, "the actuator failed; will retry at the next interval");
            } else {
                if let (Some(producer), Some(topic)) = (&decisions, &watch.decisions_topic) {
                    let record = decision_json(&observation, &decision, replicas).to_string();
                    let sent = producer.send(
                        rdkafka::producer::BaseRecord::<'_, str, str>::to(topic).key(&watch.group).payload(&record),
                    );
                    if let Err((e, _)) = sent {
                        count_error("decision_record");
                        tracing::warn!(error = %e, %topic, "could not write the decision record");
                    }
                }
                notify::send(&config.notify, &decision_json(&observation, &decision, replicas));
                if decision.replicas > replicas {
                    pending_up = Some((now, decision.replicas));
                }
                replicas = decision.replicas;
            }
        }
        if let Err(e) = actuator.reconcile() {
            count_error("reconcile");
            tracing::warn!(error = %e, "the actuator could not restore the replica count");
        }
        record_metrics(&observation, &decision);
        metrics::gauge!("tidal_scale_ready_replicas").set(f64::from(snapshot.ready_replicas));
        if let Some(cost) = &config.policies.cost {
            metrics::gauge!("tidal_scale_cost_per_hour").set(cost.per_hour(replicas));
        }
        if let Some(rate) = scaler.measured_per_replica() {
            metrics::gauge!("tidal_scale_per_replica_rate").set(rate);
        }
        previous = Some(snapshot);
        let _ = tokio::time::timeout(watch.interval, shutdown.requested()).await;
    };
    actuator.shutdown();
    result
}

/// The smallest partition count among the watched topics (what bounds useful consumers).
fn partitions_per_topic(snapshot: &Snapshot) -> u32 {
    let mut counts: std::collections::BTreeMap<&str, u32> = std::collections::BTreeMap::new();
    for p in &snapshot.partitions {
        *counts.entry(p.topic.as_str()).or_default() += 1;
    }
    counts.values().copied().min().unwrap_or(0)
}

async fn grow_partitions(
    admin: &rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>,
    topics: &[String],
    target: u32,
) -> Result<()> {
    let requests: Vec<NewPartitions<'_>> = topics.iter().map(|t| NewPartitions::new(t, target as usize)).collect();
    let results = admin
        .create_partitions(&requests, &AdminOptions::new())
        .await
        .map_err(|e| Error::kafka("adding partitions", e))?;
    for result in results {
        match result {
            Ok(topic) => tracing::warn!(
                %topic,
                partitions = target,
                "added partitions: new records' keys map to partitions differently from now on \
                 (per-key order holds within each period, not across the change)"
            ),
            Err((topic, code)) => tracing::warn!(%topic, ?code, "could not add partitions"),
        }
    }
    Ok(())
}

/// The record written to the decisions topic.
fn decision_json(observation: &Observation, decision: &super::Decision, from: u32) -> serde_json::Value {
    let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    serde_json::json!({
        "at_ms": at_ms,
        "from": from,
        "to": decision.replicas,
        "wanted": decision.wanted,
        "policy": decision.policy,
        "reason": decision.reason,
        "stalled": decision.stalled,
        "lag": observation.total_lag,
        "ingest_rate": observation.ingest_rate,
        "processing_rate": observation.processing_rate,
        "consumers": observation.consumers,
        "serving_replicas": observation.serving,
        "partitions": observation.partitions,
    })
}

fn record_metrics(observation: &Observation, decision: &super::Decision) {
    metrics::gauge!("tidal_scale_replicas").set(f64::from(decision.replicas));
    metrics::gauge!("tidal_scale_wanted_replicas").set(f64::from(decision.wanted));
    metrics::gauge!("tidal_scale_lag").set(observation.total_lag as f64);
    metrics::gauge!("tidal_scale_ingest_rate").set(observation.ingest_rate);
    metrics::gauge!("tidal_scale_processing_rate").set(observation.processing_rate);
    metrics::gauge!("tidal_scale_members").set(f64::from(observation.consumers));
    metrics::gauge!("tidal_scale_serving_replicas").set(f64::from(observation.serving));
    metrics::gauge!("tidal_scale_partitions").set(f64::from(observation.partitions));
    metrics::gauge!("tidal_scale_stalled").set(if decision.stalled { 1.0 } else { 0.0 });
    metrics::counter!("tidal_scale_decisions_total", "policy" => decision.policy).increment(1);
}

/// Counts a failure the scaler survives; `kind`: observe, grow_partitions, actuate, reconcile,
/// decision_record.
fn count_error(kind: &'static str) {
    metrics::counter!("tidal_scale_errors_total", "kind" => kind).increment(1);
}

/// `tidal status`: one line per partition.
pub fn status_table(snapshot: &Snapshot, previous: Option<&Snapshot>) -> String {
    let mut out = format!(
        "group state {} · consumers {} in {} replicas · total lag {}\n{:<32} {:>4} {:>12} {:>12} {:>9} {:>9}  owner\n",
        snapshot.group_state,
        snapshot.consumers,
        snapshot.replicas,
        snapshot.total_lag(),
        "topic",
        "part",
        "end",
        "committed",
        "lag",
        "rate/s"
    );
    for p in &snapshot.partitions {
        let rate = previous.and_then(|prev| {
            let old = prev.partitions.iter().find(|o| o.topic == p.topic && o.partition == p.partition)?;
            let dt = snapshot.at - prev.at;
            (dt > 0.0).then(|| (p.end_offset - old.end_offset).max(0) as f64 / dt)
        });
        out.push_str(&format!(
            "{:<32} {:>4} {:>12} {:>12} {:>9} {:>9}  {}\n",
            p.topic,
            p.partition,
            p.end_offset,
            p.committed.map_or("-".to_string(), |c| c.to_string()),
            p.lag(),
            rate.map_or("-".to_string(), |r| format!("{r:.1}")),
            p.owner.as_deref().unwrap_or("-")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::observe::PartitionState;

    #[test]
    fn the_status_table_has_a_line_per_partition() {
        let p = |partition, end, committed: Option<i64>, owner: Option<&str>| PartitionState {
            topic: "tidal.requests.sentiment".into(),
            partition,
            end_offset: end,
            start_offset: 0,
            committed,
            owner: owner.map(str::to_string),
        };
        let before = Snapshot {
            at: 0.0,
            partitions: vec![p(0, 10, Some(5), None), p(1, 0, None, None)],
            consumers: 1,
            replicas: 1,
            ready_replicas: 1,
            group_state: "Stable".into(),
        };
        let now = Snapshot {
            at: 2.0,
            partitions: vec![p(0, 30, Some(25), Some("w-0")), p(1, 4, None, None)],
            consumers: 1,
            replicas: 1,
            ready_replicas: 1,
            group_state: "Stable".into(),
        };
        let table = status_table(&now, Some(&before));
        assert_eq!(table.lines().count(), 4, "{table}");
        assert!(table.contains("total lag 9"), "{table}");
        assert!(table.lines().nth(2).unwrap().contains("10.0") && table.contains("w-0"), "{table}");
        assert_eq!(partitions_per_topic(&now), 2);
    }
}
