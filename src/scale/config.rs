//! The scaler's configuration file (`tidal scale run --config scale.toml`): `[watch]` (group,
//! topics, interval, partition growth, override file, metrics), `[policies]` (bounds, policies,
//! damping), `[actuator]` (`kind = "local" | "command" | "compose" | "dry-run"`) and
//! `[simulation]` (the replica model `tidal scale simulate` uses).
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::actuator::ActuatorConfig;
use super::decide::PolicyConfig;
use super::run::WatchConfig;
use super::simulate::ReplicaModel;
use crate::error::{Error, Result};

/// The whole file; every table optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScaleConfig {
    pub watch: WatchConfig,
    pub policies: PolicyConfig,
    pub actuator: ActuatorConfig,
    /// Where decisions are announced (a webhook, a command).
    pub notify: super::notify::NotifyConfig,
    /// Rules that raise the replica floor when an event or a share of results announces load.
    pub signals: Vec<super::signals::SignalRule>,
    pub simulation: SimulationConfig,
}

/// The simulated processor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulationConfig {
    /// Records per second one replica processes (measure yours with `tidal bench`: the capacity row).
    pub per_replica_rate: f64,
    pub partitions: u32,
    /// Time from a scale-up decision to the new replica serving.
    #[serde(with = "humantime_serde")]
    pub startup: Duration,
    /// Time between decisions.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Time from a record's processing to its offset's commit (the batch and its transaction):
    /// a busy group shows this much of its rate as lag even without a backlog.
    #[serde(with = "humantime_serde")]
    pub commit_delay: Duration,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        SimulationConfig {
            per_replica_rate: 200.0,
            partitions: 8,
            startup: Duration::from_secs(15),
            interval: Duration::from_secs(5),
            commit_delay: Duration::from_secs(1),
        }
    }
}

impl SimulationConfig {
    pub fn model(&self) -> ReplicaModel {
        ReplicaModel {
            per_replica_rate: self.per_replica_rate,
            partitions: self.partitions,
            startup: self.startup,
            interval: self.interval,
            commit_delay: self.commit_delay,
        }
    }
}

impl ScaleConfig {
    /// The configuration of `path`, or the defaults without one.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        path.map_or_else(|| Ok(ScaleConfig::default()), ScaleConfig::from_file)
    }

    /// Reads and checks a file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.into(), source })?;
        Self::from_toml(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        let config: ScaleConfig = toml::from_str(text).map_err(|e| Error::Config(e.message().to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        let p = &self.policies;
        let bad = |m: String| Err(Error::Config(m));
        if p.max_replicas == 0 || p.min_replicas > p.max_replicas {
            return bad(format!(
                "policies: need 0 ≤ min_replicas ≤ max_replicas and max_replicas ≥ 1 (got {} and {})",
                p.min_replicas, p.max_replicas
            ));
        }
        if let Some(cost) = &p.cost {
            if !(cost.per_replica_hour > 0.0 && cost.max_per_hour >= 0.0) {
                return bad("policies.cost: per_replica_hour must be above 0 and max_per_hour at least 0".into());
            }
            if cost.max_replicas() < p.min_replicas {
                return bad(format!(
                    "policies.cost: max_per_hour {} pays for {} replicas, fewer than min_replicas {}: raise the \
                     budget or lower min_replicas",
                    cost.max_per_hour,
                    cost.max_replicas(),
                    p.min_replicas
                ));
            }
        }
        if p.lag.as_ref().is_some_and(|l| l.lag_threshold == 0) {
            return bad("policies.lag.lag_threshold must be at least 1".into());
        }
        if let Some(latency) = &p.latency {
            if latency.target <= latency.service_time || !(0.0..=1.0).contains(&latency.percentile) {
                return bad(format!(
                    "policies.latency: target ({}) must exceed service_time ({}) and percentile be within 0..1",
                    humantime::format_duration(latency.target),
                    humantime::format_duration(latency.service_time)
                ));
            }
        }
        for rule in &self.signals {
            rule.check().map_err(Error::Config)?;
        }
        if let Some(w) = p.schedule.iter().find(|w| w.contains(0).is_none()) {
            return bad(format!("policies.schedule: window {}–{} must use HH:MM times", w.from, w.to));
        }
        let s = &self.simulation;
        let rate_ok = s.per_replica_rate.is_finite() && s.per_replica_rate > 0.0;
        if !rate_ok || s.partitions == 0 || s.interval.is_zero() {
            return bad("simulation: per_replica_rate, partitions and interval must be above zero".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_working_defaults() {
        let c = ScaleConfig::from_toml("").unwrap();
        assert_eq!(c.policies.min_replicas, 1);
        assert!(c.policies.lag.is_some() && c.policies.rate.is_some());
    }

    #[test]
    fn every_policy_parses_and_mistakes_are_named() {
        let text = r#"
[policies]
min_replicas = 2
max_replicas = 12
[policies.lag]
lag_threshold = 500
activation_lag_threshold = 50
[policies.rate]
per_replica_rate = 180.0
target_drain = "2m"
[[policies.ladder]]
rate = 1000.0
replicas = 6
[policies.predictive]
window = "90s"
horizon = "20s"
[[policies.schedule]]
from = "19:30"
to = "22:00"
min_replicas = 6
[policies.damping]
stabilization = "5m"
max_step = 4
[simulation]
per_replica_rate = 150.0
"#;
        let c = ScaleConfig::from_toml(text).unwrap();
        assert_eq!(c.policies.rate.unwrap().target_drain, Duration::from_secs(120));
        assert_eq!(c.policies.damping.max_step, 4);
        assert!(ScaleConfig::from_toml("[policies]\nmax_replicas = 0\n").is_err());
        let typo = ScaleConfig::from_toml("[policies.lag]\nlag_treshold = 5\n").unwrap_err().to_string();
        assert!(typo.contains("lag_treshold"), "{typo}");
        let lag_only = ScaleConfig::from_toml("[policies]\nrate = false\n").unwrap();
        assert!(lag_only.policies.rate.is_none() && lag_only.policies.lag.is_some());
        let on = ScaleConfig::from_toml("[policies]\nrate = true\n").unwrap_err().to_string();
        assert!(on.contains("`false` to turn it off"), "{on}");
        let clock = ScaleConfig::from_toml("[[policies.schedule]]\nfrom = \"7pm\"\nto = \"9pm\"\nmin_replicas = 2\n");
        assert!(clock.unwrap_err().to_string().contains("HH:MM"));
    }
}
