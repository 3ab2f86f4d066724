//! Scaling policies: pure functions from what was observed to a wanted replica count.
//!
//! Each policy is optional; the scaler takes the largest of the enabled ones (so any single
//! signal of load can add capacity), then applies the schedule floor, the manual override and
//! the `[min_replicas, max_replicas]` clamp. Time is passed in, never read, so every rule is
//! testable without sleeping.
use std::time::Duration;

use serde::Deserialize;

/// What the scaler knows at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Seconds since the scaler started (an injected clock).
    pub at: f64,
    /// Sum of per-partition lag (log-end − committed) over the watched topics.
    pub total_lag: u64,
    /// Records per second arriving (Δ log-end / Δt).
    pub ingest_rate: f64,
    /// Records per second committed by the group (Δ committed / Δt).
    pub processing_rate: f64,
    /// Partitions of the watched topics (the most consumers that can do work).
    pub partitions: u32,
    /// The most partitions the scaler may grow the topics to (`watch.max_partitions`; 0: never).
    pub max_partitions: u32,
    /// Consumers in the group now (a replica runs one per worker).
    pub consumers: u32,
    /// Replicas (processes) with consumers in the group now.
    pub serving: u32,
    /// Replicas the actuator runs now.
    pub replicas: u32,
}

impl Observation {
    /// Consumers each replica runs, as observed (1 until a replica has joined).
    pub fn consumers_per_replica(&self) -> u32 {
        if self.serving == 0 {
            1
        } else {
            self.consumers.div_ceil(self.serving).max(1)
        }
    }

    /// The most replicas that all get partitions: partitions ÷ consumers per replica, rounded
    /// up (the last replica may leave some of its consumers idle).
    pub fn useful_replicas(&self) -> u32 {
        self.partitions.div_ceil(self.consumers_per_replica())
    }

    /// The most replicas worth running: those that all get partitions once the topics have
    /// grown as far as they may.
    pub fn replica_cap(&self) -> u32 {
        self.partitions.max(self.max_partitions).div_ceil(self.consumers_per_replica())
    }
}

/// A spending ceiling: no more replicas than `max_per_hour / per_replica_hour`. It wins over
/// every policy and over `max_replicas`; only the manual override goes past it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CostCeiling {
    /// What one replica costs per hour (any currency).
    pub per_replica_hour: f64,
    /// The most to spend per hour.
    pub max_per_hour: f64,
}

impl CostCeiling {
    /// The most replicas the budget pays for.
    pub fn max_replicas(&self) -> u32 {
        if self.per_replica_hour <= 0.0 {
            return u32::MAX;
        }
        // A small epsilon: 3.20 / 0.40 is 7.999… in floating point.
        ((self.max_per_hour / self.per_replica_hour) + 1e-9).floor().clamp(0.0, f64::from(u32::MAX)) as u32
    }

    /// The hourly cost of `replicas`.
    pub fn per_hour(&self, replicas: u32) -> f64 {
        f64::from(replicas) * self.per_replica_hour
    }
}

/// KEDA-compatible lag policy: `ceil(total_lag / lag_threshold)`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LagPolicy {
    /// Lag one replica is expected to carry.
    pub lag_threshold: u64,
    /// Below this total lag the policy asks for nothing (scale-to-minimum stays possible).
    #[serde(default)]
    pub activation_lag_threshold: u64,
    /// Allow more replicas than partitions (the extra ones idle).
    #[serde(default)]
    pub allow_idle_consumers: bool,
}

/// Throughput policy: enough replicas for the ingest rate with headroom, plus enough to drain the
/// current lag within `target_drain`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RatePolicy {
    /// Records per second one replica sustains; unset → measured (processing rate / replicas
    /// while there is lag, i.e. while replicas are saturated).
    #[serde(default)]
    pub per_replica_rate: Option<f64>,
    /// Extra capacity over the ingest rate, e.g. 0.2 for 20 %.
    #[serde(default = "default_headroom")]
    pub headroom: f64,
    /// Lag should be gone within this long.
    #[serde(default = "default_target_drain", with = "humantime_serde")]
    pub target_drain: Duration,
}

fn default_headroom() -> f64 {
    0.2
}

fn default_target_drain() -> Duration {
    Duration::from_secs(60)
}

/// One band of a ladder: at or above `rate` records/s (or `lag` records), at least `replicas`.
/// Latency SLO: enough replicas that a request arriving now waits at most `target` — the
/// backlog ahead of it drains within `target − service_time` while the replicas also keep up
/// with the `percentile` of the recent ingest rates (bursts included, not only the average).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LatencyPolicy {
    /// The longest a new request should wait for its result.
    #[serde(with = "humantime_serde")]
    pub target: Duration,
    /// Which recent ingest rate to provision for (0.95: the 95th percentile of the last `window`).
    #[serde(default = "default_percentile")]
    pub percentile: f64,
    /// The ingest history the percentile is taken over.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// A request's own time in the processor once its turn comes (batching, the model, the
    /// commit): `tidal_end_to_end_latency_seconds` at low load tells it.
    #[serde(default, with = "humantime_serde")]
    pub service_time: Duration,
}

fn default_percentile() -> f64 {
    0.95
}

impl LatencyPolicy {
    /// `history`: (seconds, ingest rate) of recent observations, oldest first.
    pub fn wish(&self, now: &Observation, history: &[(f64, f64)], per_replica: Option<f64>) -> Option<Wish> {
        let per_replica = per_replica.filter(|r| *r > 0.0)?;
        let since = now.at - self.window.as_secs_f64();
        let mut recent: Vec<f64> = history.iter().filter(|(t, _)| *t >= since).map(|(_, r)| *r).collect();
        recent.push(now.ingest_rate);
        recent.sort_by(f64::total_cmp);
        let rank = ((recent.len() as f64 * self.percentile.clamp(0.0, 1.0)).ceil() as usize).clamp(1, recent.len());
        let ingest = recent[rank - 1];
        let budget = self.target.saturating_sub(self.service_time).as_secs_f64().max(0.1);
        let needed = ingest + now.total_lag as f64 / budget;
        let replicas = (needed / per_replica).ceil().clamp(0.0, f64::from(u32::MAX)) as u32;
        let wait = expected_wait(now.total_lag, now.processing_rate) + self.service_time.as_secs_f64();
        Some(Wish {
            policy: "latency",
            replicas,
            reason: format!(
                "expected wait {wait:.1}s (target {:.1}s): p{:.0} ingest {ingest:.1}/s + lag {} within {budget:.1}s =                  {needed:.1}/s at {per_replica:.1}/s per replica → {replicas}",
                self.target.as_secs_f64(),
                self.percentile * 100.0,
                now.total_lag,
            ),
        })
    }
}

/// How long a request arriving now waits for the backlog ahead of it, at the processing rate.
pub fn expected_wait(lag: u64, processing_rate: f64) -> f64 {
    match (lag, processing_rate) {
        (0, _) => 0.0,
        (_, rate) if rate > 0.0 => lag as f64 / rate,
        _ => f64::INFINITY,
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Band {
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub lag: Option<u64>,
    pub replicas: u32,
}

/// Predictive policy: a least-squares line through the recent ingest rates, projected ahead.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PredictivePolicy {
    /// How much history the trend is fitted on.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// How far ahead to project: the time a new replica takes to start serving.
    #[serde(default = "default_horizon", with = "humantime_serde")]
    pub horizon: Duration,
}

fn default_window() -> Duration {
    Duration::from_secs(60)
}

fn default_horizon() -> Duration {
    Duration::from_secs(30)
}

/// A time window (seconds of the day, UTC) with a replica floor, e.g. before a match.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleWindow {
    /// Start, `HH:MM` UTC.
    pub from: String,
    /// End, `HH:MM` UTC (may be past midnight: `22:00`–`02:00`).
    pub to: String,
    /// At least this many replicas inside the window.
    pub min_replicas: u32,
}

impl ScheduleWindow {
    /// Whether `seconds_of_day` (UTC) falls inside the window. `None` if a time is malformed.
    pub fn contains(&self, seconds_of_day: u32) -> Option<bool> {
        let (from, to) = (parse_hhmm(&self.from)?, parse_hhmm(&self.to)?);
        Some(if from <= to {
            (from..to).contains(&seconds_of_day)
        } else {
            seconds_of_day >= from || seconds_of_day < to
        })
    }
}

/// `HH:MM` → seconds of the day.
pub fn parse_hhmm(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 3600 + m * 60)
}

/// A policy's wish and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Wish {
    pub policy: &'static str,
    pub replicas: u32,
    pub reason: String,
}

impl LagPolicy {
    pub fn wish(&self, now: &Observation) -> Option<Wish> {
        if now.total_lag < self.activation_lag_threshold.max(1) {
            return None;
        }
        let mut replicas = now.total_lag.div_ceil(self.lag_threshold.max(1)).min(u64::from(u32::MAX)) as u32;
        if !self.allow_idle_consumers && now.partitions > 0 {
            replicas = replicas.min(now.useful_replicas());
        }
        Some(Wish {
            policy: "lag",
            replicas,
            reason: format!("lag {} / lag_threshold {} → {replicas}", now.total_lag, self.lag_threshold),
        })
    }
}

impl RatePolicy {
    /// `per_replica`: the configured rate, else the measured one (if any).
    pub fn wish(&self, now: &Observation, measured_per_replica: Option<f64>) -> Option<Wish> {
        let per_replica = self.per_replica_rate.or(measured_per_replica).filter(|r| *r > 0.0)?;
        let for_ingest = now.ingest_rate * (1.0 + self.headroom.max(0.0));
        let drain_seconds = self.target_drain.as_secs_f64().max(1.0);
        let for_lag = now.total_lag as f64 / drain_seconds;
        let replicas = ((for_ingest + for_lag) / per_replica).ceil().clamp(0.0, f64::from(u32::MAX)) as u32;
        Some(Wish {
            policy: "rate",
            replicas,
            reason: format!(
                "ingest {:.1}/s × {:.2} + lag {} over {:.0}s = {:.1}/s at {:.1}/s per replica → {replicas}",
                now.ingest_rate,
                1.0 + self.headroom,
                now.total_lag,
                drain_seconds,
                for_ingest + for_lag,
                per_replica
            ),
        })
    }
}

/// The highest band reached by rate or lag.
pub fn ladder_wish(bands: &[Band], now: &Observation) -> Option<Wish> {
    bands
        .iter()
        .filter(|b| b.rate.is_some_and(|r| now.ingest_rate >= r) || b.lag.is_some_and(|l| now.total_lag >= l))
        .max_by_key(|b| b.replicas)
        .map(|b| Wish {
            policy: "ladder",
            replicas: b.replicas,
            reason: format!(
                "ingest {:.1}/s, lag {} reach the band of {} replicas",
                now.ingest_rate, now.total_lag, b.replicas
            ),
        })
}

impl PredictivePolicy {
    /// `history`: (time, ingest rate) samples, oldest first; `per_replica`: sustained rate;
    /// `measured_startup`: how long scale-ups were measured to take (the projection looks at least
    /// that far ahead).
    pub fn wish(
        &self,
        history: &[(f64, f64)],
        now: f64,
        per_replica: Option<f64>,
        measured_startup: Option<f64>,
    ) -> Option<Wish> {
        let per_replica = per_replica.filter(|r| *r > 0.0)?;
        let horizon = self.horizon.as_secs_f64().max(measured_startup.unwrap_or(0.0));
        let start = now - self.window.as_secs_f64();
        let recent: Vec<(f64, f64)> = history.iter().copied().filter(|(t, _)| *t >= start).collect();
        let (slope, intercept) = linear_fit(&recent)?;
        let ahead = now + horizon;
        let projected = (slope * ahead + intercept).max(0.0);
        let replicas = (projected / per_replica).ceil().clamp(0.0, f64::from(u32::MAX)) as u32;
        Some(Wish {
            policy: "predictive",
            replicas,
            reason: format!("ingest trend {slope:+.2}/s² projects {projected:.1}/s in {horizon:.0}s → {replicas}"),
        })
    }
}

/// Least-squares line `y = slope·x + intercept`; `None` with fewer than 3 points or no spread.
pub fn linear_fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (sxx, sxy) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + (x - mx).powi(2), b + (x - mx) * (y - my)));
    if sxx < 1e-12 {
        return None;
    }
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}

/// The floor from the schedule windows open at `seconds_of_day`.
pub fn schedule_floor(windows: &[ScheduleWindow], seconds_of_day: u32) -> Option<Wish> {
    windows.iter().filter(|w| w.contains(seconds_of_day) == Some(true)).max_by_key(|w| w.min_replicas).map(|w| Wish {
        policy: "schedule",
        replicas: w.min_replicas,
        reason: format!("schedule window {}–{} UTC asks for at least {}", w.from, w.to, w.min_replicas),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn obs(total_lag: u64, ingest_rate: f64) -> Observation {
        Observation {
            at: 0.0,
            total_lag,
            ingest_rate,
            processing_rate: 0.0,
            partitions: 8,
            max_partitions: 0,
            consumers: 1,
            serving: 1,
            replicas: 1,
        }
    }

    #[test]
    fn latency_policy_drains_the_backlog_within_the_target_and_covers_bursts() {
        let p = LatencyPolicy {
            target: Duration::from_secs(2),
            percentile: 0.95,
            window: Duration::from_secs(60),
            service_time: Duration::from_millis(500),
        };
        // 300 records ahead within 1.5 s = 200/s, plus 100/s arriving: 300/s at 100/s each.
        let now = Observation { at: 100.0, processing_rate: 100.0, ..obs(300, 100.0) };
        let wish = p.wish(&now, &[], Some(100.0)).unwrap();
        assert_eq!(wish.replicas, 3, "{}", wish.reason);
        assert!(wish.reason.contains("expected wait 3.5s"), "{}", wish.reason);
        // A burst to 400/s within the window counts, one older than the window does not.
        let history = [(10.0, 900.0), (50.0, 400.0), (95.0, 100.0)];
        assert_eq!(p.wish(&now, &history, Some(100.0)).unwrap().replicas, 6);
        assert_eq!(p.wish(&now, &[], None), None, "no per-replica rate yet: no wish");
        assert_eq!(expected_wait(10, 0.0), f64::INFINITY);
    }

    #[test]
    fn lag_policy_matches_keda() {
        let p = LagPolicy { lag_threshold: 100, activation_lag_threshold: 10, allow_idle_consumers: false };
        assert_eq!(p.wish(&obs(5, 0.0)), None, "below activation");
        assert_eq!(p.wish(&obs(250, 0.0)).unwrap().replicas, 3);
        assert_eq!(p.wish(&obs(100_000, 0.0)).unwrap().replicas, 8, "capped at partitions");
        let two_workers = Observation { consumers: 4, serving: 2, ..obs(100_000, 0.0) };
        assert_eq!(p.wish(&two_workers).unwrap().replicas, 4, "8 partitions, 2 consumers per replica: 4 replicas");
        let idle = LagPolicy { allow_idle_consumers: true, ..p };
        assert_eq!(idle.wish(&obs(100_000, 0.0)).unwrap().replicas, 1000);
    }

    #[test]
    fn rate_policy_covers_ingest_and_drain() {
        let p = RatePolicy { per_replica_rate: Some(100.0), headroom: 0.2, target_drain: Duration::from_secs(60) };
        // 250/s × 1.2 = 300/s, plus 6000 lag over 60 s = 100/s → 400/s → 4 replicas.
        assert_eq!(p.wish(&obs(6000, 250.0), None).unwrap().replicas, 4);
        let measured = RatePolicy { per_replica_rate: None, ..p };
        assert_eq!(measured.wish(&obs(0, 250.0), None), None, "no rate known yet");
        assert_eq!(measured.wish(&obs(0, 250.0), Some(50.0)).unwrap().replicas, 6);
    }

    #[test]
    fn ladder_takes_the_highest_band_reached() {
        let bands = vec![
            Band { rate: Some(100.0), lag: None, replicas: 2 },
            Band { rate: Some(500.0), lag: None, replicas: 5 },
            Band { rate: None, lag: Some(10_000), replicas: 8 },
        ];
        assert_eq!(ladder_wish(&bands, &obs(0, 50.0)), None);
        assert_eq!(ladder_wish(&bands, &obs(0, 600.0)).unwrap().replicas, 5);
        assert_eq!(ladder_wish(&bands, &obs(20_000, 150.0)).unwrap().replicas, 8);
    }

    #[test]
    fn predictive_projects_a_rising_trend() {
        let p = PredictivePolicy { window: Duration::from_secs(60), horizon: Duration::from_secs(30) };
        // Rate rising 2/s every second: 100 at t=0 ... 200 at t=50; in 30 s → 260/s.
        let history: Vec<(f64, f64)> =
            (0..=50).step_by(5).map(|t| (f64::from(t), 100.0 + 2.0 * f64::from(t))).collect();
        let wish = p.wish(&history, 50.0, Some(50.0), None).unwrap();
        assert_eq!(wish.replicas, 6, "{wish:?}");
        // Scale-ups measured at 60 s: look 60 s ahead → 320/s → 7.
        assert_eq!(p.wish(&history, 50.0, Some(50.0), Some(60.0)).unwrap().replicas, 7);
        assert_eq!(p.wish(&history[..2], 5.0, Some(50.0), None), None, "too little history");
    }

    #[test]
    fn schedule_windows_wrap_midnight() {
        let w = ScheduleWindow { from: "22:00".into(), to: "02:00".into(), min_replicas: 4 };
        assert_eq!(w.contains(23 * 3600), Some(true));
        assert_eq!(w.contains(3600), Some(true));
        assert_eq!(w.contains(12 * 3600), Some(false));
        assert_eq!(schedule_floor(&[w], 23 * 3600).unwrap().replicas, 4);
        assert_eq!(parse_hhmm("24:00"), None);
        let bad = ScheduleWindow { from: "x".into(), to: "02:00".into(), min_replicas: 1 };
        assert_eq!(bad.contains(0), None);
    }

    proptest! {
        #[test]
        fn lag_wish_grows_with_lag(a in 0u64..1_000_000, b in 0u64..1_000_000, threshold in 1u64..10_000) {
            let p = LagPolicy { lag_threshold: threshold, activation_lag_threshold: 0, allow_idle_consumers: false };
            let (lo, hi) = (a.min(b), a.max(b));
            let wish = |lag| p.wish(&obs(lag, 0.0)).map_or(0, |w| w.replicas);
            prop_assert!(wish(lo) <= wish(hi));
            prop_assert!(wish(hi) <= 8);
        }

        #[test]
        fn rate_wish_grows_with_rate_and_lag(r1 in 0.0f64..10_000.0, r2 in 0.0f64..10_000.0, lag in 0u64..100_000) {
            let p = RatePolicy { per_replica_rate: Some(75.0), headroom: 0.1, target_drain: Duration::from_secs(30) };
            let (lo, hi) = (r1.min(r2), r1.max(r2));
            prop_assert!(p.wish(&obs(lag, lo), None).unwrap().replicas <= p.wish(&obs(lag, hi), None).unwrap().replicas);
            prop_assert!(p.wish(&obs(0, lo), None).unwrap().replicas <= p.wish(&obs(lag, lo), None).unwrap().replicas);
        }
    }
}
