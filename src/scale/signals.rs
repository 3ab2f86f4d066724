//! Signals: scale before the surge, not after the lag.
//!
//! Live-event platforms pre-warm capacity when something *announces* load: a commentary feed says
//! a key player is coming in, and viewers follow a minute later. Lag and rate policies only see
//! the surge once it queues; a signal rule raises the replica floor as soon as its event arrives,
//! for `hold`, so the new replicas have loaded their models when the requests come.
//!
//! ```toml
//! [[signals]]                       # an event on any topic of JSON records
//! topic = "match.events"
//! when = { field = "type", equals = "wicket" }
//! min_replicas = 6
//! hold = "10m"
//!
//! [[signals]]                       # the share of a label in tidal's own results
//! topic = "tidal.results.sentiment"
//! share = { field = "result.label", equals = "positive", above = 0.6, window = "2m", min_records = 20 }
//! min_replicas = 6
//! hold = "10m"
//! ```
//!
//! Fields are dotted paths into the record's JSON. The rules are pure (time is passed in); the
//! `SignalReader` feeds them the records of their topics, read from the end (live events only).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use serde_json::Value;

use super::policy::Wish;
use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::kafka;

/// A field of a record equal to a value.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FieldEquals {
    /// Dotted path into the record's JSON, e.g. `result.label`.
    pub field: String,
    pub equals: Value,
}

impl FieldEquals {
    fn matches(&self, record: &Value) -> bool {
        self.field.split('.').try_fold(record, |value, key| value.get(key)) == Some(&self.equals)
    }
}

/// The share of records matching `field = equals` over `window` went above `above`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShareAbove {
    pub field: String,
    pub equals: Value,
    /// A share between 0 and 1.
    pub above: f64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Fewer records than this in the window decide nothing.
    #[serde(default = "default_min_records")]
    pub min_records: usize,
}

fn default_min_records() -> usize {
    20
}

/// One rule: an event (`when`) or a share (`share`) on `topic` raises the floor to
/// `min_replicas` for `hold`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SignalRule {
    pub topic: String,
    #[serde(default)]
    pub when: Option<FieldEquals>,
    #[serde(default)]
    pub share: Option<ShareAbove>,
    pub min_replicas: u32,
    #[serde(with = "humantime_serde")]
    pub hold: Duration,
}

impl SignalRule {
    /// Exactly one of `when` and `share`, a share within 0..1.
    pub fn check(&self) -> std::result::Result<(), String> {
        match (&self.when, &self.share) {
            (Some(_), None) => Ok(()),
            (None, Some(share)) if (0.0..1.0).contains(&share.above) && !share.window.is_zero() => Ok(()),
            (None, Some(_)) => Err(format!("signal on {}: share.above must be in 0..1 and window above 0", self.topic)),
            _ => Err(format!("signal on {}: give exactly one of `when` and `share`", self.topic)),
        }
    }
}

/// The rules and what they have seen.
#[derive(Debug, Default)]
pub struct Signals {
    rules: Vec<SignalRule>,
    /// Per rule: until when its floor holds, and what raised it.
    raised: Vec<Option<(f64, String)>>,
    /// Per share rule: (seconds, matched) of the records in its window.
    seen: Vec<VecDeque<(f64, bool)>>,
}

impl Signals {
    pub fn new(rules: Vec<SignalRule>) -> Self {
        let n = rules.len();
        Signals { rules, raised: vec![None; n], seen: vec![VecDeque::new(); n] }
    }

    /// The topics the rules read.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.rules.iter().map(|r| r.topic.clone()).collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// Feeds one record of `topic`, seen at `at` seconds.
    pub fn record(&mut self, topic: &str, record: &Value, at: f64) {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.topic != topic {
                continue;
            }
            let hold_until = at + rule.hold.as_secs_f64();
            if let Some(when) = &rule.when {
                if when.matches(record) {
                    self.raised[i] = Some((hold_until, format!("{} = {} on {topic}", when.field, when.equals)));
                }
            }
            if let Some(share) = &rule.share {
                let seen = &mut self.seen[i];
                let equal = FieldEquals { field: share.field.clone(), equals: share.equals.clone() };
                seen.push_back((at, equal.matches(record)));
                while seen.front().is_some_and(|(t, _)| *t < at - share.window.as_secs_f64()) {
                    seen.pop_front();
                }
                let matched = seen.iter().filter(|(_, m)| *m).count();
                let fraction = matched as f64 / seen.len() as f64;
                if seen.len() >= share.min_records && fraction > share.above {
                    let why = format!(
                        "{} = {} in {matched} of the last {} records of {topic} ({:.0} % > {:.0} %)",
                        share.field,
                        share.equals,
                        seen.len(),
                        fraction * 100.0,
                        share.above * 100.0
                    );
                    self.raised[i] = Some((hold_until, why));
                }
            }
        }
    }

    /// The highest floor a rule holds at `at`, as a wish.
    pub fn floor(&self, at: f64) -> Option<Wish> {
        self.rules
            .iter()
            .zip(&self.raised)
            .filter_map(|(rule, raised)| raised.as_ref().filter(|(until, _)| *until > at).map(|r| (rule, r)))
            .max_by_key(|(rule, _)| rule.min_replicas)
            .map(|(rule, (until, why))| Wish {
                policy: "signal",
                replicas: rule.min_replicas,
                reason: format!("signal: {why} holds at least {} for {:.0}s more", rule.min_replicas, until - at),
            })
    }
}

/// Reads the signal topics from their end (only events from now on count), without a group.
pub struct SignalReader {
    consumer: BaseConsumer,
    assigned: HashSet<(String, i32)>,
}

impl SignalReader {
    pub fn new(kafka_config: &KafkaConfig, topics: &[String]) -> Result<Self> {
        let group = format!("tidal-scale-signals-{}", std::process::id());
        let consumer: BaseConsumer = kafka::read_committed_consumer_config(kafka_config, &group)?
            .set("auto.offset.reset", "latest")
            .create()
            .map_err(|e| Error::kafka("creating the signal reader", e))?;
        let mut assignment = TopicPartitionList::new();
        let mut assigned = HashSet::new();
        for topic in topics {
            let partitions = super::run::topic_partitions(consumer.client(), topic)?;
            if partitions.is_empty() {
                return Err(Error::Config(format!(
                    "signals: topic {topic} does not exist: create it, or remove the rule that reads it"
                )));
            }
            for partition in partitions {
                assignment
                    .add_partition_offset(topic, partition, Offset::End)
                    .map_err(|e| Error::kafka(format!("assigning {topic}/{partition}"), e))?;
                assigned.insert((topic.clone(), partition));
            }
        }
        consumer.assign(&assignment).map_err(|e| Error::kafka("assigning the signal topics", e))?;
        Ok(SignalReader { consumer, assigned })
    }

    /// Feeds every record that arrived since the last call to `signals` (non-JSON ones are
    /// skipped), stamped `at`.
    pub fn feed(&self, signals: &mut Signals, at: f64) -> usize {
        let mut fed = 0;
        while let Some(message) = self.consumer.poll(Duration::ZERO) {
            let Ok(message) = message else { continue };
            let Some(value) = message.payload().and_then(|p| serde_json::from_slice::<Value>(p).ok()) else {
                continue;
            };
            if self.assigned.contains(&(message.topic().to_string(), message.partition())) {
                signals.record(message.topic(), &value, at);
                fed += 1;
            }
        }
        fed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wicket() -> SignalRule {
        SignalRule {
            topic: "match.events".into(),
            when: Some(FieldEquals { field: "type".into(), equals: json!("wicket") }),
            share: None,
            min_replicas: 6,
            hold: Duration::from_secs(600),
        }
    }

    fn excitement() -> SignalRule {
        SignalRule {
            topic: "results".into(),
            when: None,
            share: Some(ShareAbove {
                field: "result.label".into(),
                equals: json!("positive"),
                above: 0.6,
                window: Duration::from_secs(60),
                min_records: 5,
            }),
            min_replicas: 4,
            hold: Duration::from_secs(300),
        }
    }

    #[test]
    fn an_event_raises_the_floor_for_its_hold() {
        let mut signals = Signals::new(vec![wicket()]);
        signals.record("match.events", &json!({"type": "four"}), 10.0);
        assert_eq!(signals.floor(10.0), None, "another event");
        signals.record("other.topic", &json!({"type": "wicket"}), 10.0);
        assert_eq!(signals.floor(10.0), None, "another topic");
        signals.record("match.events", &json!({"type": "wicket", "over": 17}), 20.0);
        let wish = signals.floor(30.0).unwrap();
        assert_eq!((wish.policy, wish.replicas), ("signal", 6));
        assert!(wish.reason.contains("type = \"wicket\""), "{}", wish.reason);
        assert!(signals.floor(619.0).is_some() && signals.floor(621.0).is_none(), "held for 10 minutes");
    }

    #[test]
    fn a_share_of_a_label_over_its_window_raises_the_floor() {
        let mut signals = Signals::new(vec![excitement(), wicket()]);
        let label = |l: &str| json!({"id": "x", "result": {"label": l}});
        for (t, l) in ["negative", "negative", "negative", "positive"].iter().enumerate() {
            signals.record("results", &label(l), t as f64);
        }
        assert_eq!(signals.floor(4.0), None, "fewer than min_records");
        for t in 4..7 {
            signals.record("results", &label("positive"), f64::from(t));
            assert_eq!(signals.floor(f64::from(t)), None, "at most 4 of 7 (57 %)");
        }
        signals.record("results", &label("positive"), 7.0);
        assert_eq!(signals.floor(7.0).unwrap().replicas, 4, "5 of 8 = 62.5 % > 60 %");
        // Records older than the window no longer count.
        let mut late = Signals::new(vec![excitement()]);
        for t in 0..5 {
            late.record("results", &label("positive"), f64::from(t) * 20.0);
        }
        assert_eq!(late.floor(80.0), None, "only 4 records within the last 60 s");
        // The highest floor wins.
        signals.record("match.events", &json!({"type": "wicket"}), 8.0);
        assert_eq!(signals.floor(8.0).unwrap().replicas, 6);
    }

    #[test]
    fn rules_need_exactly_one_condition() {
        assert!(wicket().check().is_ok() && excitement().check().is_ok());
        let both = SignalRule { share: excitement().share, ..wicket() };
        assert!(both.check().unwrap_err().contains("exactly one"));
        let neither = SignalRule { when: None, ..wicket() };
        assert!(neither.check().is_err());
    }
}
