//! A watchdog over the workers' blocking Kafka calls. librdkafka's transactional calls take a
//! timeout, but `send_offsets_to_transaction` has been seen to wait forever when the broker that
//! coordinates the transaction and the group dies or freezes mid-call (librdkafka issues #5456,
//! #5511): the worker hangs silently while `/metrics` still answers. tidal does not depend on the
//! library keeping its word: each worker marks the start and end of every blocking call, and the
//! watchdog ends the process with a clear reason when a call overruns its timeout by a margin.
//! The supervisor restarts it, and the restarted workers fence the stuck producers.
//! `tidal_worker_blocked_seconds{worker}` shows how long each worker's current call has run: the
//! liveness signal that goes bad first.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics;

/// Exit code of a process ended by the watchdog (EX_SOFTWARE).
pub const EXIT_WEDGED: i32 = 70;

/// One worker's blocking-call marker, shared with the watchdog.
#[derive(Debug)]
pub struct Heartbeat {
    epoch: Instant,
    /// Milliseconds since `epoch` at which the current call started, plus one; 0 when none runs.
    started: AtomicU64,
    call: Mutex<&'static str>,
    /// Milliseconds since `epoch` of the worker loop's last turn (for `/livez`).
    progress: AtomicU64,
    /// Whether the worker's consumer has joined its group (for `/readyz`).
    joined: AtomicBool,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            epoch: Instant::now(),
            started: AtomicU64::new(0),
            call: Mutex::new(""),
            progress: AtomicU64::new(0),
            joined: AtomicBool::new(false),
        }
    }
}

/// Marks a blocking call as running until dropped.
#[must_use = "the call is marked as running only while the guard lives"]
pub struct CallGuard<'a>(&'a Heartbeat);

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.0.started.store(0, Ordering::SeqCst);
    }
}

impl Heartbeat {
    /// Marks `call` as started now.
    pub fn enter(&self, call: &'static str) -> CallGuard<'_> {
        if let Ok(mut current) = self.call.lock() {
            *current = call;
        }
        self.started.store(self.epoch.elapsed().as_millis() as u64 + 1, Ordering::SeqCst);
        CallGuard(self)
    }

    /// The worker's loop turned (collected a batch, or found none within `idle_poll`).
    pub fn progressed(&self) {
        self.progress.store(self.epoch.elapsed().as_millis() as u64, Ordering::SeqCst);
    }

    /// How long since the loop last turned (since start before its first turn).
    pub fn since_progress(&self) -> Duration {
        self.epoch.elapsed().saturating_sub(Duration::from_millis(self.progress.load(Ordering::SeqCst)))
    }

    pub fn set_joined(&self, joined: bool) {
        self.joined.store(joined, Ordering::SeqCst);
    }

    pub fn joined(&self) -> bool {
        self.joined.load(Ordering::SeqCst)
    }

    /// The running call and how long it has run, if one runs.
    pub fn running(&self) -> Option<(&'static str, Duration)> {
        let started = self.started.load(Ordering::SeqCst);
        if started == 0 {
            return None;
        }
        let since = Duration::from_millis(started - 1);
        let call = self.call.lock().map(|c| *c).unwrap_or("a Kafka call");
        Some((call, self.epoch.elapsed().saturating_sub(since)))
    }
}

/// Starts the watchdog thread: every 500 ms it publishes each worker's blocked time and calls
/// `on_overrun(worker, call, elapsed)` (once) when a call has run longer than `limit`.
pub fn spawn(
    heartbeats: Vec<Arc<Heartbeat>>,
    limit: Duration,
    on_overrun: impl Fn(usize, &'static str, Duration) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("tidal-watchdog".into()).spawn(move || loop {
        for (worker, heartbeat) in heartbeats.iter().enumerate() {
            let running = heartbeat.running();
            metrics::worker_blocked(worker, running.map_or(Duration::ZERO, |(_, elapsed)| elapsed));
            if let Some((call, elapsed)) = running.filter(|(_, elapsed)| *elapsed > limit) {
                on_overrun(worker, call, elapsed);
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    })
}

/// What the watchdog does in production: say why, then end the process.
pub fn end_process(worker: usize, call: &'static str, elapsed: Duration) {
    tracing::error!(
        worker,
        call,
        blocked_for = ?elapsed,
        "a Kafka call overran its timeout (librdkafka can wait forever when a coordinator broker dies \
         mid-call); ending the process so that its supervisor restarts it and the new workers fence \
         the stuck producers"
    );
    std::process::exit(EXIT_WEDGED);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_call_that_overruns_is_reported_with_its_worker_and_name() {
        let beats = vec![Arc::new(Heartbeat::default()), Arc::new(Heartbeat::default())];
        let (tx, rx) = mpsc::channel();
        let watchdog = spawn(beats.clone(), Duration::from_millis(300), move |worker, call, elapsed| {
            let _ = tx.send((worker, call, elapsed));
        })
        .unwrap();
        // Worker 0 finishes its call in time; worker 1 is stuck.
        drop(beats[0].enter("commit_transaction"));
        let _stuck = beats[1].enter("send_offsets_to_transaction");
        let (worker, call, elapsed) = rx.recv_timeout(Duration::from_secs(5)).expect("the watchdog fired");
        assert_eq!((worker, call), (1, "send_offsets_to_transaction"));
        assert!(elapsed > Duration::from_millis(300));
        watchdog.join().unwrap();
    }

    #[test]
    fn calls_that_end_in_time_are_never_reported() {
        let beat = Arc::new(Heartbeat::default());
        let (tx, rx) = mpsc::channel::<usize>();
        let _watchdog = spawn(vec![beat.clone()], Duration::from_millis(400), move |worker, _, _| {
            let _ = tx.send(worker);
        })
        .unwrap();
        for _ in 0..10 {
            let _call = beat.enter("commit_transaction");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(beat.running().is_none());
        assert!(rx.recv_timeout(Duration::from_millis(800)).is_err(), "fired for calls that ended in time");
    }
}
