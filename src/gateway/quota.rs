//! How much the gateway takes in: a token bucket per tenant (429) and one cap on what all callers
//! hold at once (503), both answered with `Retry-After`.
//!
//! Why both: a tenant's rate protects the other tenants from it (a runaway batch job gets 429s,
//! the others keep their latency); the global caps protect the gateway itself — requests in
//! flight and the bytes of their bodies are what a broker outage or a slow processor makes pile
//! up, and a gateway that keeps taking them runs out of memory. A caller over a cap is refused
//! *before* its body is read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A tenant's quota: `rate` tokens per second, at most `burst` saved up; one request takes one.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_s: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket { rate: rate_per_s, burst, state: Mutex::new((burst, Instant::now())) }
    }

    /// Takes a token at `now`, or says how long until one is there.
    pub fn take(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (tokens, last) = *state;
        let refilled = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate).min(self.burst);
        if refilled >= 1.0 {
            *state = (refilled - 1.0, now);
            Ok(())
        } else {
            *state = (refilled, now);
            Err(Duration::from_secs_f64((1.0 - refilled) / self.rate))
        }
    }
}

/// The gateway's caps on requests in flight and on the bytes of their bodies.
#[derive(Debug)]
pub struct Admission {
    max_requests: usize,
    max_bytes: usize,
    held: Arc<Held>,
}

#[derive(Debug, Default)]
struct Held {
    requests: AtomicUsize,
    bytes: AtomicUsize,
}

/// A request's place within the caps, given back when dropped.
#[derive(Debug)]
pub struct Admitted {
    bytes: usize,
    held: Arc<Held>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.held.requests.fetch_sub(1, Ordering::AcqRel);
        self.held.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Which cap a request would cross.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    Requests(usize),
    Bytes(usize),
}

impl Admission {
    pub fn new(max_requests: usize, max_bytes: usize) -> Self {
        Admission { max_requests: max_requests.max(1), max_bytes: max_bytes.max(1), held: Arc::default() }
    }

    /// Admits a request whose body holds `bytes`, if both caps allow it.
    pub fn admit(&self, bytes: usize) -> Result<Admitted, Full> {
        let requests = self.held.requests.fetch_add(1, Ordering::AcqRel) + 1;
        let total = self.held.bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        let admitted = Admitted { bytes, held: self.held.clone() };
        if requests > self.max_requests {
            return Err(Full::Requests(self.max_requests));
        }
        if total > self.max_bytes {
            return Err(Full::Bytes(self.max_bytes));
        }
        Ok(admitted)
    }

    /// Requests and bytes held now.
    pub fn held(&self) -> (usize, usize) {
        (self.held.requests.load(Ordering::Acquire), self.held.bytes.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let bucket = TokenBucket::new(2.0, 3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| bucket.take(t0).is_ok()), "the burst");
        let wait = bucket.take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "one token every 0.5 s: {wait:?}");
        assert!(bucket.take(t0 + Duration::from_millis(499)).is_err());
        assert!(bucket.take(t0 + Duration::from_millis(501)).is_ok());
        // A long pause saves up the burst, no more.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| bucket.take(later).is_ok()).count(), 3);
    }

    #[test]
    fn caps_refuse_the_request_that_crosses_them_and_free_on_drop() {
        let admission = Admission::new(2, 100);
        let a = admission.admit(40).unwrap();
        let _b = admission.admit(40).unwrap();
        assert_eq!(admission.admit(0).unwrap_err(), Full::Requests(2));
        drop(a);
        assert_eq!(admission.admit(61).unwrap_err(), Full::Bytes(100));
        let _c = admission.admit(60).unwrap();
        assert_eq!(admission.held(), (2, 100), "refused requests hold nothing");
    }
}
