//! What one run measured, and the arithmetic on it: throughput, latency percentiles, results per
//! second over time.

use serde::Serialize;

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// One measured run of one target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunResult {
    /// e.g. `tidal exactly-once 80%`.
    pub name: String,
    /// Offered load (open loop), requests/s; `None` for a backlog or closed-loop run.
    pub offered: Option<f64>,
    pub requests: u64,
    /// Distinct requests answered (successfully, for REST).
    pub results: u64,
    /// Answers seen more than once.
    pub duplicates: u64,
    /// Requests that failed for good (REST: after every retry).
    pub errors: u64,
    /// Answers per second over the run.
    pub throughput: f64,
    pub latency_ms: Option<Percentiles>,
    /// CPU time of the target's process (all threads) per answer over a drain, microseconds;
    /// `None` for in-process runs and open-loop runs.
    pub cpu_us_per_answer: Option<f64>,
    /// Answers in each second of the run.
    pub per_second: Vec<f64>,
}

/// The 50th, 95th and 99th percentiles (nearest rank) of `values`; `None` when empty.
pub fn percentiles(mut values: Vec<f64>) -> Option<Percentiles> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
    Some(Percentiles { p50: rank(0.50), p95: rank(0.95), p99: rank(0.99) })
}

/// Counts of `offsets` (seconds since the run started) in each whole second.
pub fn per_second(offsets: &[f64]) -> Vec<f64> {
    let seconds = offsets.iter().fold(0.0f64, |a, &b| a.max(b)).floor() as usize + 1;
    let mut counts = vec![0.0; if offsets.is_empty() { 0 } else { seconds }];
    for &t in offsets {
        counts[t.max(0.0).floor() as usize] += 1.0;
    }
    counts
}

/// Answers that arrive within this of the first one came with it (one committed transaction).
const FIRST_BURST: f64 = 0.02;

/// Answers per second between the first and the last answer (a backlog drained as fast as the
/// target can). Answers arrive a committed transaction at a time, so those that came with the
/// first one were computed *before* the clock started: they are not counted, or a backlog of a
/// few batches would look several times faster than it is. 0 when everything came at once (the
/// backlog was too small to tell).
pub fn drain_rate(offsets: &[f64]) -> f64 {
    drain_window(offsets).map_or(0.0, |(first, last, counted)| counted as f64 / (last - first))
}

/// The span a drain rate is measured over: the first and the last answer, and the answers
/// counted in it (those after the first burst); `None` when everything came at once.
pub fn drain_window(offsets: &[f64]) -> Option<(f64, f64, usize)> {
    let (first, last) = offsets.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    if offsets.len() < 2 || last - first <= FIRST_BURST {
        return None;
    }
    let after_first_burst = offsets.iter().filter(|&&t| t - first > FIRST_BURST).count();
    Some((first, last, after_first_burst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentiles(values), Some(Percentiles { p50: 50.0, p95: 95.0, p99: 99.0 }));
        assert_eq!(percentiles(vec![7.0]), Some(Percentiles { p50: 7.0, p95: 7.0, p99: 7.0 }));
        assert_eq!(percentiles(Vec::new()), None);
    }

    #[test]
    fn answers_are_bucketed_by_second() {
        assert_eq!(per_second(&[0.1, 0.9, 1.0, 3.5]), vec![2.0, 1.0, 0.0, 1.0]);
        assert!(per_second(&[]).is_empty());
    }

    #[test]
    fn drain_rate_spans_first_to_last_without_the_first_burst() {
        assert_eq!(drain_rate(&[10.0, 10.5, 11.0, 12.0]), 1.5);
        assert_eq!(drain_rate(&[1.0]), 0.0);
        // Batches of 4 committed every second: 8 answers after the first batch, in 2 s.
        let batches = [0.0, 0.001, 0.002, 0.003, 1.0, 1.0, 1.001, 1.001, 2.0, 2.0, 2.0, 2.0];
        assert_eq!(drain_rate(&batches), 4.0);
        assert_eq!(drain_rate(&[5.0, 5.001, 5.002]), 0.0, "one burst says nothing about a rate");
    }
}
