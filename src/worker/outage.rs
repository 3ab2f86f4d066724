//! One warning per outage instead of one per failed poll. librdkafka reports every failed
//! attempt to reach a broker through the consumer; during a broker restart that is dozens of
//! identical lines. A worker logs the first error of an outage with what it means, counts the
//! rest, and says once when records flow again and how long it lasted.

use std::time::{Duration, Instant};

/// A worker's view of the current outage, if any.
#[derive(Debug, Default)]
pub struct Outage {
    current: Option<(Instant, u64)>,
}

impl Outage {
    /// A consumer error: warns at the first of an outage, counts the others.
    pub fn error(&mut self, worker: usize, error: &dyn std::fmt::Display) {
        match &mut self.current {
            Some((_, count)) => {
                *count += 1;
                tracing::debug!(worker, %error, "consumer error (still failing)");
            }
            None => {
                tracing::warn!(
                    worker,
                    %error,
                    "consumer error: Kafka is unreachable or refusing; librdkafka retries by itself and the worker \
                     resumes when it answers (further errors of this outage are logged at debug level)"
                );
                self.current = Some((Instant::now(), 1));
            }
        }
    }

    /// A record arrived: ends the outage, if one was under way; returns how long it lasted.
    pub fn record(&mut self, worker: usize) -> Option<Duration> {
        let (since, errors) = self.current.take()?;
        let lasted = since.elapsed();
        tracing::info!(worker, errors, lasted = ?lasted, "Kafka answers again; the outage is over");
        Some(lasted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_starts_at_the_first_error_and_ends_at_the_next_record() {
        let mut outage = Outage::default();
        assert_eq!(outage.record(0), None, "records without an outage end nothing");
        outage.error(0, &"AllBrokersDown");
        outage.error(0, &"AllBrokersDown");
        assert!(matches!(outage.current, Some((_, 2))));
        assert!(outage.record(0).is_some());
        assert!(outage.current.is_none());
    }
}
