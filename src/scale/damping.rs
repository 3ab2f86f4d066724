//! Damping: how a wanted replica count becomes the next one. Up at once (bounded by `max_step`),
//! down only when every wish of the last `stabilization` window was that low (as Kubernetes'
//! HPA does), to counts that spread the partitions evenly, and never up for a stalled group.
use std::collections::VecDeque;
use std::time::Duration;

use serde::Deserialize;

/// Damping settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DampingConfig {
    /// A lower count is applied only after it was wanted for this long.
    #[serde(with = "humantime_serde")]
    pub stabilization: Duration,
    /// Most replicas added or removed in one decision (0 = unbounded).
    pub max_step: u32,
    /// Round counts so that every replica owns the same number of partitions (±0), which
    /// removes replicas that could not take a partition of their own anyway.
    pub even_spread: bool,
    /// Observations in a row with lag growing and nothing committed before the group counts as
    /// stalled.
    pub stall_after: u32,
}

impl Default for DampingConfig {
    fn default() -> Self {
        DampingConfig { stabilization: Duration::from_secs(300), max_step: 0, even_spread: true, stall_after: 3 }
    }
}

/// The fewest replicas that give each one at most as many partitions as `replicas` would.
pub fn even_spread(replicas: u32, partitions: u32) -> u32 {
    if replicas == 0 || partitions == 0 || replicas >= partitions {
        return replicas;
    }
    let per_replica = partitions.div_ceil(replicas);
    partitions.div_ceil(per_replica)
}

/// Remembers recent wishes and stall evidence between decisions.
#[derive(Debug, Default)]
pub struct Damper {
    wishes: VecDeque<(f64, u32)>,
    stalled_streak: u32,
    last_lag: Option<u64>,
}

/// The damped result and why it differs from the wish (if it does).
#[derive(Debug, Clone, PartialEq)]
pub struct Damped {
    pub replicas: u32,
    pub note: Option<String>,
    pub stalled: bool,
}

impl Damper {
    /// Records that the group committed nothing (`processing_rate == 0`) while lag was `lag`;
    /// returns whether the group now counts as stalled.
    pub fn observe_progress(&mut self, config: &DampingConfig, lag: u64, processing_rate: f64, members: u32) -> bool {
        let growing = self.last_lag.is_some_and(|last| lag > last);
        self.last_lag = Some(lag);
        if members > 0 && processing_rate <= 0.0 && growing {
            self.stalled_streak += 1;
        } else if processing_rate > 0.0 || lag == 0 {
            self.stalled_streak = 0;
        }
        self.stalled_streak >= config.stall_after.max(1)
    }

    /// The next replica count for `wanted` at time `now` (seconds), given `current`.
    pub fn damp(
        &mut self,
        config: &DampingConfig,
        now: f64,
        current: u32,
        wanted: u32,
        replica_slots: u32,
        stalled: bool,
    ) -> Damped {
        // `replica_slots`: the most replicas that all get partitions (partitions ÷ consumers per
        // replica); spreading evenly over them spreads the partitions evenly.
        let wanted = if config.even_spread { even_spread(wanted, replica_slots) } else { wanted };
        self.wishes.push_back((now, wanted));
        let window = config.stabilization.as_secs_f64();
        while self.wishes.front().is_some_and(|(t, _)| *t < now - window) {
            self.wishes.pop_front();
        }
        let step = |delta: u32| if config.max_step == 0 { delta } else { delta.min(config.max_step) };
        if wanted > current {
            if stalled {
                return Damped {
                    replicas: current,
                    note: Some(format!(
                        "not scaling up to {wanted}: the group is stalled (lag growing, nothing committed) — \
                         a poison pill or a stuck worker is not load"
                    )),
                    stalled: true,
                };
            }
            let replicas = current + step(wanted - current);
            let note = (replicas != wanted).then(|| format!("step limited to {} (max_step)", config.max_step));
            return Damped { replicas, note, stalled };
        }
        // Down: to the highest wish within the window.
        let floor = self.wishes.iter().map(|(_, w)| *w).max().unwrap_or(wanted);
        if floor >= current {
            let note = (wanted < current).then(|| {
                format!("holding {current}: a higher count was wanted within the last {:.0}s (stabilization)", window)
            });
            return Damped { replicas: current, note, stalled };
        }
        let replicas = current - step(current - floor);
        let note = (replicas != wanted)
            .then(|| format!("down to {replicas} (highest wish in the window {floor}, max_step {})", config.max_step));
        Damped { replicas, note, stalled }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config() -> DampingConfig {
        DampingConfig { stabilization: Duration::from_secs(60), max_step: 0, even_spread: false, stall_after: 2 }
    }

    #[test]
    fn up_at_once_down_after_the_window() {
        let c = config();
        let mut d = Damper::default();
        assert_eq!(d.damp(&c, 0.0, 1, 5, 8, false).replicas, 5);
        assert_eq!(d.damp(&c, 10.0, 5, 2, 8, false).replicas, 5, "held within the window");
        assert_eq!(d.damp(&c, 59.0, 5, 2, 8, false).replicas, 5);
        assert_eq!(d.damp(&c, 71.0, 5, 2, 8, false).replicas, 2, "the 5 at t=0..10 has left the window");
    }

    #[test]
    fn max_step_bounds_both_directions() {
        let c = DampingConfig { max_step: 2, ..config() };
        let mut d = Damper::default();
        assert_eq!(d.damp(&c, 0.0, 1, 9, 16, false).replicas, 3);
        let mut d = Damper::default();
        assert_eq!(d.damp(&c, 0.0, 9, 1, 16, false).replicas, 7);
    }

    #[test]
    fn even_spread_drops_replicas_without_partitions_of_their_own() {
        assert_eq!(even_spread(5, 8), 4, "5 or 4 replicas both carry 2 partitions at most");
        assert_eq!(even_spread(3, 8), 3);
        assert_eq!(even_spread(7, 12), 6);
        assert_eq!(even_spread(12, 8), 12, "idle consumers are the lag policy's call");
        assert_eq!(even_spread(0, 8), 0);
    }

    #[test]
    fn a_stalled_group_is_not_scaled_up() {
        let c = config();
        let mut d = Damper::default();
        assert!(!d.observe_progress(&c, 100, 0.0, 2));
        assert!(!d.observe_progress(&c, 200, 0.0, 2));
        assert!(d.observe_progress(&c, 300, 0.0, 2), "lag grew twice with nothing committed");
        let damped = d.damp(&c, 0.0, 2, 6, 8, true);
        assert_eq!(damped.replicas, 2);
        assert!(damped.note.unwrap().contains("stalled"));
        assert!(!d.observe_progress(&c, 250, 40.0, 2), "progress clears it");
    }

    proptest! {
        #[test]
        fn never_below_any_recent_wish(wishes in proptest::collection::vec(0u32..20, 1..30)) {
            let c = config();
            let mut d = Damper::default();
            let mut current = 1;
            for (i, w) in wishes.iter().enumerate() {
                let t = i as f64 * 5.0;
                current = d.damp(&c, t, current, *w, 32, false).replicas;
                let recent_max = wishes[..=i].iter().enumerate().filter(|(j, _)| (*j as f64) * 5.0 >= t - 60.0).map(|(_, w)| *w).max().unwrap();
                prop_assert!(current >= *w, "never below the current wish");
                prop_assert!(current <= recent_max.max(1), "never above what was wanted recently (or the start)");
            }
        }
    }
}
