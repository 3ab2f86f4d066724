//! librdkafka's error and log callbacks for the worker clients, with connection failures
//! throttled.
//!
//! Why: while a broker is down librdkafka reports every failed connect twice — a `FAIL` log line
//! and an error (`BrokerTransportFailure`, `AllBrokersDown`, name resolution) — once per broker per
//! reconnect attempt, and rdkafka's defaults log each at ERROR: 420 lines in 60 s for one idle
//! worker (measured; with this module 7 warnings in all, none at ERROR). librdkafka reconnects by itself and the worker reports the outage once
//! (`worker::outage`), so here the first report of a kind is a warning, the same kind again within
//! [`WINDOW`] is counted and logged at debug, and the next warning says how many there were.
//! Everything else is logged as rdkafka would.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// At most one warning per kind of connection failure in this window.
pub const WINDOW: Duration = Duration::from_secs(30);

/// What became of one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// A connection failure, logged as a warning.
    Warned,
    /// A connection failure like one warned about within the window: counted, logged at debug.
    Suppressed,
    /// Any other error: logged at ERROR.
    Error,
}

/// Per client: when each kind of connection failure was last warned about, and how many of that
/// kind were suppressed since.
#[derive(Debug, Default)]
pub struct ConnectionErrors {
    last: Mutex<Vec<(&'static str, Instant, u64)>>,
}

/// The kind of connection failure an error code reports, if it is one.
fn connection_failure(code: RDKafkaErrorCode) -> Option<&'static str> {
    match code {
        RDKafkaErrorCode::BrokerTransportFailure => Some("transport"),
        RDKafkaErrorCode::AllBrokersDown => Some("all brokers down"),
        RDKafkaErrorCode::Resolve => Some("resolve"),
        _ => None,
    }
}

impl ConnectionErrors {
    /// librdkafka's error callback (`error`, with librdkafka's `reason`).
    pub fn error(&self, error: &KafkaError, reason: &str) -> Reported {
        self.error_at(error, reason, Instant::now())
    }

    /// librdkafka's log callback. A broker connection's `FAIL` line is logged at debug: the error
    /// callback reports the same failure, throttled.
    pub fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let line = format_args!("librdkafka: {facility} {message}");
        match level {
            _ if facility == "FAIL" => tracing::debug!(target: "librdkafka", "{line}"),
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "{line}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{line}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(target: "librdkafka", "{line}"),
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "{line}"),
        }
    }

    fn error_at(&self, error: &KafkaError, reason: &str, now: Instant) -> Reported {
        match error.rdkafka_error_code().and_then(connection_failure) {
            Some(kind) => self.throttle(kind, reason, now),
            None => {
                tracing::error!(target: "librdkafka", "{reason} ({error})");
                Reported::Error
            }
        }
    }

    fn throttle(&self, kind: &'static str, reason: &str, now: Instant) -> Reported {
        let Ok(mut last) = self.last.lock() else {
            return Reported::Suppressed;
        };
        match last.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, at, suppressed)) if now.duration_since(*at) < WINDOW => {
                *suppressed += 1;
                tracing::debug!(target: "librdkafka", "{reason}");
                Reported::Suppressed
            }
            entry => {
                let suppressed = entry.as_ref().map_or(0, |(_, _, s)| *s);
                last.retain(|(k, _, _)| *k != kind);
                last.push((kind, now, 0));
                tracing::warn!(
                    target: "librdkafka",
                    suppressed_since_last_warning = suppressed,
                    "{reason} (librdkafka reconnects by itself; reports like this are logged at most every {}s)",
                    WINDOW.as_secs()
                );
                Reported::Warned
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport() -> KafkaError {
        KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure)
    }

    #[test]
    fn one_warning_per_kind_of_connection_failure_per_window() {
        let errors = ConnectionErrors::default();
        let start = Instant::now();
        let refused = "127.0.0.1:9092/1: Connect to ipv4#127.0.0.1:9092 failed: Connection refused";
        assert_eq!(errors.error_at(&transport(), refused, start), Reported::Warned);
        assert_eq!(errors.error_at(&transport(), refused, start + Duration::from_secs(1)), Reported::Suppressed);
        let down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(errors.error_at(&down, "1/1 brokers are down", start), Reported::Warned, "another kind");
        assert_eq!(errors.error_at(&transport(), refused, start + WINDOW), Reported::Warned, "the window passed");
    }

    #[test]
    fn other_errors_stay_errors() {
        let errors = ConnectionErrors::default();
        let fatal = KafkaError::Global(RDKafkaErrorCode::Fatal);
        assert_eq!(errors.error_at(&fatal, "fatal", Instant::now()), Reported::Error);
        assert_eq!(errors.error_at(&fatal, "fatal", Instant::now()), Reported::Error);
    }
}
