//! One shutdown signal for every long-running command (`serve`, `scale run`, `gateway`,
//! `status --watch`): requested once, by SIGINT/SIGTERM or by code (a worker that found a twin
//! process, a test), and seen both by threads that poll (`is_requested`, `sleep`) and by async
//! tasks that wait (`requested`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A cloneable shutdown signal; every clone sees the same request.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<Signal>);

#[derive(Debug, Default)]
struct Signal {
    requested: AtomicBool,
    notify: Notify,
}

impl Shutdown {
    /// A signal that only code requests.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// A signal requested by the first SIGINT or SIGTERM (logged with `what` is stopping).
    /// Needs a running tokio runtime.
    pub fn on_signals(what: &'static str) -> std::io::Result<Self> {
        let shutdown = Shutdown::new();
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let requester = shutdown.clone();
        tokio::spawn(async move {
            let signal = tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = sigterm.recv() => "SIGTERM",
            };
            tracing::info!("{signal}: stopping {what}");
            requester.request();
        });
        Ok(shutdown)
    }

    /// Requests shutdown (idempotent).
    pub fn request(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        self.0.requested.load(Ordering::SeqCst)
    }

    /// Completes once shutdown is requested.
    pub async fn requested(&self) {
        loop {
            // Registered before the check, so a request between the two is not missed.
            let notified = self.0.notify.notified();
            if self.is_requested() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps up to `duration` on this thread, waking early on a request. Returns whether
    /// shutdown was requested.
    pub fn sleep(&self, duration: Duration) -> bool {
        let until = Instant::now() + duration;
        while !self.is_requested() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())));
        }
        self.is_requested()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_wakes_sleepers_and_waiters_on_every_clone() {
        let shutdown = Shutdown::new();
        let sleeper = shutdown.clone();
        let started = Instant::now();
        let thread = std::thread::spawn(move || sleeper.sleep(Duration::from_secs(30)));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let waiter = shutdown.clone();
        let waited = runtime.spawn(async move { waiter.requested().await });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!shutdown.is_requested());
        shutdown.request();
        assert!(thread.join().unwrap(), "the sleeper saw the request");
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), waited).await }).unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_request_before_waiting_is_not_missed() {
        let shutdown = Shutdown::new();
        shutdown.request();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), shutdown.requested()).await }).unwrap();
        let started = Instant::now();
        assert!(shutdown.sleep(Duration::from_secs(30)), "a requested signal ends a sleep at once");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
