//! The decision: every enabled policy's wish, the largest wins; then the schedule floor, the
//! manual override, the `[min_replicas, max_replicas]` clamp and damping. Pure: the caller
//! passes the observation, the time of day and the override.
use std::collections::VecDeque;

use serde::{Deserialize, Deserializer};

use super::damping::{Damper, DampingConfig};
use super::policy::{
    ladder_wish, schedule_floor, Band, CostCeiling, LagPolicy, LatencyPolicy, Observation, PredictivePolicy,
    RatePolicy, ScheduleWindow, Wish,
};

/// Which policies run and their bounds.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// On by default; `lag = false` turns it off.
    #[serde(deserialize_with = "table_or_false")]
    pub lag: Option<LagPolicy>,
    /// On by default; `rate = false` turns it off (a lag-only scaler, as KEDA's Kafka scaler is).
    #[serde(deserialize_with = "table_or_false")]
    pub rate: Option<RatePolicy>,
    /// A latency SLO: replicas such that a new request waits at most the target.
    pub latency: Option<LatencyPolicy>,
    pub ladder: Vec<Band>,
    pub predictive: Option<PredictivePolicy>,
    pub schedule: Vec<ScheduleWindow>,
    /// A spending ceiling over everything but the override.
    pub cost: Option<CostCeiling>,
    pub damping: DampingConfig,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            min_replicas: 1,
            max_replicas: 8,
            lag: Some(LagPolicy { lag_threshold: 200, activation_lag_threshold: 1, allow_idle_consumers: false }),
            rate: Some(RatePolicy {
                per_replica_rate: None,
                headroom: 0.2,
                target_drain: std::time::Duration::from_secs(60),
            }),
            latency: None,
            ladder: Vec::new(),
            predictive: None,
            schedule: Vec::new(),
            cost: None,
            damping: DampingConfig::default(),
        }
    }
}

/// A policy's table, or `false` for a policy that is on by default and should be off.
fn table_or_false<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::Error;
    match toml::Value::deserialize(deserializer)? {
        toml::Value::Boolean(false) => Ok(None),
        toml::Value::Boolean(true) => {
            Err(D::Error::custom("`true` is not a policy: give the policy's table, or `false` to turn it off"))
        }
        table => table.try_into().map(Some).map_err(D::Error::custom),
    }
}

/// One decision, with everything needed to explain it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The replica count to run now.
    pub replicas: u32,
    /// What the policies asked for before damping.
    pub wanted: u32,
    /// The policy that won (`lag`, `rate`, `latency`, `ladder`, `predictive`, `schedule`, `override`,
    /// `minimum`).
    pub policy: &'static str,
    /// Human-readable inputs and arithmetic.
    pub reason: String,
    /// The group commits nothing while lag grows.
    pub stalled: bool,
}

/// Seconds of the processing rate that must be waiting before the replicas count as saturated
/// (and their rate as what a replica sustains).
const SATURATED_BACKLOG_SECONDS: f64 = 2.0;

/// The scaler's memory between decisions.
#[derive(Debug)]
pub struct Scaler {
    pub config: PolicyConfig,
    damper: Damper,
    rates: VecDeque<(f64, f64)>,
    per_replica: Option<f64>,
    startup: Option<f64>,
}

impl Scaler {
    pub fn new(config: PolicyConfig) -> Self {
        Scaler { config, damper: Damper::default(), rates: VecDeque::new(), per_replica: None, startup: None }
    }

    /// Records per second one replica was measured to sustain (while saturated), if known.
    pub fn measured_per_replica(&self) -> Option<f64> {
        self.per_replica
    }

    /// Records how long a scale-up took (decision → members joined); averaged.
    pub fn record_startup(&mut self, seconds: f64) {
        self.startup = Some(self.startup.map_or(seconds, |old| 0.5 * old + 0.5 * seconds));
    }

    /// The measured scale-up time, if any scale-up completed.
    pub fn measured_startup(&self) -> Option<f64> {
        self.startup
    }

    /// Decides the replica count for `now`; `override_replicas` wins over every policy.
    pub fn decide(&mut self, now: &Observation, seconds_of_day: u32, override_replicas: Option<u32>) -> Decision {
        self.decide_with_signal(now, seconds_of_day, override_replicas, None)
    }

    /// `decide`, with the floor a signal rule holds (`signals`) among the wishes.
    pub fn decide_with_signal(
        &mut self,
        now: &Observation,
        seconds_of_day: u32,
        override_replicas: Option<u32>,
        signal: Option<Wish>,
    ) -> Decision {
        self.learn(now);
        let stalled =
            self.damper.observe_progress(&self.config.damping, now.total_lag, now.processing_rate, now.consumers);
        let c = &self.config;
        let mut wishes: Vec<Wish> = Vec::new();
        wishes.extend(c.lag.as_ref().and_then(|p| p.wish(now)));
        wishes.extend(c.rate.as_ref().and_then(|p| p.wish(now, self.per_replica)));
        wishes.extend(ladder_wish(&c.ladder, now));
        let history: Vec<(f64, f64)> = self.rates.iter().copied().collect();
        let per_replica = c.rate.as_ref().and_then(|r| r.per_replica_rate).or(self.per_replica);
        wishes.extend(c.latency.as_ref().and_then(|p| p.wish(now, &history, per_replica)));
        wishes.extend(c.predictive.as_ref().and_then(|p| p.wish(&history, now.at, per_replica, self.startup)));
        wishes.extend(schedule_floor(&c.schedule, seconds_of_day));
        wishes.extend(signal);
        // On a tie the policy listed first wins (`rev`: `max_by_key` keeps the last maximum).
        let best = wishes.into_iter().rev().max_by_key(|w| w.replicas);
        let (policy, wanted, mut reason) = match best {
            Some(w) if w.replicas > c.min_replicas => (w.policy, w.replicas, w.reason),
            Some(w) => {
                ("minimum", c.min_replicas, format!("{} (at or below min_replicas {})", w.reason, c.min_replicas))
            }
            None => ("minimum", c.min_replicas, "no policy asks for more than min_replicas".to_string()),
        };
        if let Some(forced) = override_replicas {
            // A manual override bypasses policies and damping, but not the bounds.
            let replicas = forced.clamp(c.min_replicas, c.max_replicas.max(c.min_replicas));
            return Decision {
                replicas,
                wanted: forced,
                policy: "override",
                reason: format!("manual override to {forced}"),
                stalled,
            };
        }
        let mut bounded = wanted.clamp(c.min_replicas, c.max_replicas.max(c.min_replicas));
        if bounded != wanted {
            reason.push_str(&format!("; clamped to {bounded} (max_replicas {})", c.max_replicas));
        }
        // Replicas beyond the partitions would idle (unless the lag policy asks for idle ones).
        let idle_allowed = c.lag.as_ref().is_some_and(|l| l.allow_idle_consumers);
        let cap = now.replica_cap().max(c.min_replicas);
        if !idle_allowed && now.partitions > 0 && bounded > cap {
            bounded = cap;
            reason.push_str(&format!(
                "; capped at {cap}: {} partitions for {} consumers per replica",
                now.partitions.max(now.max_partitions),
                now.consumers_per_replica()
            ));
        }
        let damped = self.damper.damp(&c.damping, now.at, now.replicas, bounded, now.useful_replicas(), stalled);
        if let Some(note) = damped.note {
            reason.push_str("; ");
            reason.push_str(&note);
        }
        let mut replicas = damped.replicas.max(c.min_replicas);
        if let Some(cost) = &c.cost {
            let affordable = cost.max_replicas();
            if replicas > affordable {
                reason.push_str(&format!(
                    "; capped at {affordable} by cost ({:.2}/h at {:.2} per replica-hour, max {:.2}/h)",
                    cost.per_hour(replicas),
                    cost.per_replica_hour,
                    cost.max_per_hour
                ));
                replicas = affordable;
            }
        }
        Decision { replicas, wanted: bounded, policy, reason, stalled }
    }

    /// Keeps the ingest-rate history (for the trend) and the measured per-replica rate.
    fn learn(&mut self, now: &Observation) {
        self.rates.push_back((now.at, now.ingest_rate));
        let predictive = self.config.predictive.as_ref().map_or(60.0, |p| p.window.as_secs_f64());
        let latency = self.config.latency.as_ref().map_or(0.0, |p| p.window.as_secs_f64());
        let keep = predictive.max(latency).max(1.0);
        while self.rates.front().is_some_and(|(t, _)| *t < now.at - keep) {
            self.rates.pop_front();
        }
        // Per replica, not per consumer: a replica with W workers is W consumers.
        let busy_consumers = now.consumers.min(now.partitions);
        let busy = (f64::from(busy_consumers) / f64::from(now.consumers_per_replica()))
            .min(f64::from(now.replicas.max(now.serving)));
        // Saturated only when more is waiting than the group holds in flight: committed offsets
        // trail the work by a batch and its transaction, so a group with room to spare still
        // shows a lag of about a second of its rate.
        let saturated = now.total_lag as f64 >= now.processing_rate * SATURATED_BACKLOG_SECONDS;
        if saturated && now.processing_rate > 0.0 && busy > 0.0 {
            let sample = now.processing_rate / busy;
            self.per_replica = Some(match self.per_replica {
                Some(old) => 0.7 * old + 0.3 * sample,
                None => sample,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn obs(at: f64, lag: u64, ingest: f64, processing: f64, replicas: u32) -> Observation {
        Observation {
            at,
            total_lag: lag,
            ingest_rate: ingest,
            processing_rate: processing,
            partitions: 8,
            max_partitions: 0,
            consumers: replicas,
            serving: replicas,
            replicas,
        }
    }

    fn config() -> PolicyConfig {
        PolicyConfig {
            min_replicas: 1,
            max_replicas: 6,
            lag: Some(LagPolicy { lag_threshold: 100, activation_lag_threshold: 1, allow_idle_consumers: false }),
            rate: Some(RatePolicy {
                per_replica_rate: Some(50.0),
                headroom: 0.0,
                target_drain: Duration::from_secs(10),
            }),
            damping: DampingConfig {
                stabilization: Duration::from_secs(30),
                even_spread: false,
                ..DampingConfig::default()
            },
            ..PolicyConfig::default()
        }
    }

    #[test]
    fn the_largest_wish_wins_and_is_explained() {
        let mut s = Scaler::new(config());
        // lag 250 → 3; rate 100/s + 250/10 s = 125/s at 50/s → 3; the lag policy is listed first.
        let d = s.decide(&obs(0.0, 250, 100.0, 40.0, 1), 0, None);
        assert_eq!((d.replicas, d.policy), (3, "lag"));
        let d = s.decide(&obs(5.0, 250, 240.0, 40.0, 3), 0, None);
        assert_eq!((d.replicas, d.policy), (6, "rate"), "{d:?}");
        assert!(d.reason.contains("per replica"), "{}", d.reason);
    }

    #[test]
    fn bounds_override_and_minimum() {
        let mut s = Scaler::new(config());
        let d = s.decide(&obs(0.0, 100_000, 0.0, 10.0, 1), 0, None);
        assert_eq!(d.replicas, 6, "max_replicas");
        assert!(d.reason.contains("clamped"));
        let d = s.decide(&obs(1.0, 0, 0.0, 0.0, 6), 0, Some(2));
        assert_eq!((d.replicas, d.policy), (2, "override"));
        let mut idle = Scaler::new(config());
        let d = idle.decide(&obs(0.0, 0, 0.0, 0.0, 1), 0, None);
        assert_eq!((d.replicas, d.policy), (1, "minimum"));
    }

    #[test]
    fn the_rate_one_replica_sustains_is_learned_while_saturated() {
        let mut cfg = config();
        cfg.rate = Some(RatePolicy { per_replica_rate: None, headroom: 0.0, target_drain: Duration::from_secs(10) });
        let mut s = Scaler::new(cfg);
        s.decide(&obs(0.0, 0, 30.0, 30.0, 2), 0, None);
        assert_eq!(s.measured_per_replica(), None, "no lag: replicas may be idle, nothing learned");
        s.decide(&obs(5.0, 500, 200.0, 80.0, 2), 0, None);
        assert_eq!(s.measured_per_replica(), Some(40.0));
        let mut s = Scaler::new(s.config.clone());
        s.decide(&obs(0.0, 70, 60.0, 60.0, 2), 0, None);
        assert_eq!(s.measured_per_replica(), None, "about a second of work in flight is not a backlog");
    }

    #[test]
    fn replicas_with_several_workers_are_counted_as_replicas_not_consumers() {
        let mut cfg = config();
        cfg.rate = Some(RatePolicy { per_replica_rate: None, headroom: 0.0, target_drain: Duration::from_secs(10) });
        cfg.max_replicas = 20;
        let mut s = Scaler::new(cfg);
        // 2 replicas × 2 workers = 4 consumers on 8 partitions, 80/s between them.
        let two_by_two = Observation { consumers: 4, serving: 2, ..obs(0.0, 500, 200.0, 80.0, 2) };
        let d = s.decide(&two_by_two, 0, None);
        assert_eq!(s.measured_per_replica(), Some(40.0), "per replica (80 / 2), not per consumer (80 / 4)");
        // 200/s + 500 over 10 s = 250/s at 40/s per replica → 7 replicas (at 20/s per consumer: 13),
        // capped at the 4 that 8 partitions feed.
        assert_eq!((d.wanted, d.replicas, d.policy), (4, 4, "rate"), "{d:?}");
        assert!(d.reason.contains("→ 7"), "{}", d.reason);
        assert!(d.reason.contains("capped at 4"), "{}", d.reason);
        let growable = Observation { max_partitions: 16, ..two_by_two };
        assert_eq!(growable.replica_cap(), 8, "with partitions allowed to grow to 16");
        assert_eq!(two_by_two.useful_replicas(), 4, "8 partitions / 2 consumers per replica");
    }

    #[test]
    fn the_cost_ceiling_wins_over_every_policy_but_the_override() {
        let mut cfg = config();
        cfg.max_replicas = 20;
        cfg.cost = Some(CostCeiling { per_replica_hour: 0.40, max_per_hour: 1.20 });
        let mut s = Scaler::new(cfg);
        let d = s.decide(&obs(0.0, 100_000, 0.0, 10.0, 1), 0, None);
        assert_eq!(d.replicas, 3, "1.20/h at 0.40 pays for 3: {d:?}");
        assert!(d.reason.contains("capped at 3 by cost"), "{}", d.reason);
        let d = s.decide(&obs(5.0, 100_000, 0.0, 10.0, 3), 0, Some(5));
        assert_eq!((d.replicas, d.policy), (5, "override"), "the operator's override goes past the budget");
        assert_eq!(CostCeiling { per_replica_hour: 0.40, max_per_hour: 3.20 }.max_replicas(), 8);
    }

    #[test]
    fn schedule_floor_applies_inside_its_window() {
        let mut cfg = config();
        cfg.schedule = vec![ScheduleWindow { from: "18:00".into(), to: "20:00".into(), min_replicas: 4 }];
        let mut s = Scaler::new(cfg);
        let d = s.decide(&obs(0.0, 0, 0.0, 0.0, 1), 19 * 3600, None);
        assert_eq!((d.replicas, d.policy), (4, "schedule"));
    }
}
