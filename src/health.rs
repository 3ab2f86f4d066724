//! `/livez` and `/readyz`, served beside `/metrics`. "The metrics endpoint answers" stays true
//! while a worker is wedged, so it is no liveness signal. Liveness: every worker's loop made
//! progress recently (a wedged one fails it, and the orchestrator restarts the process).
//! Readiness: the models are loaded and every worker has joined its group (a load balancer or
//! the scaler can tell a replica that serves from one that is starting).

use std::sync::{Arc, OnceLock};

/// What a long-running command knows about its own health.
pub trait Health: Send + Sync {
    /// `Err(reason)` when the process should be restarted.
    fn live(&self) -> Result<(), String>;
    /// `Err(reason)` when the process does not serve (yet).
    fn ready(&self) -> Result<(), String>;
}

/// The health of a command that is ready once it runs (the gateway, the scaler).
pub struct Running;

impl Health for Running {
    fn live(&self) -> Result<(), String> {
        Ok(())
    }
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Where the HTTP endpoints find the health, set once the command knows it: until then the
/// process is live and not ready ("starting").
#[derive(Clone, Default)]
pub struct HealthSlot(Arc<OnceLock<Arc<dyn Health>>>);

impl HealthSlot {
    /// A slot already holding `health`.
    pub fn with(health: Arc<dyn Health>) -> Self {
        let slot = HealthSlot::default();
        slot.set(health);
        slot
    }

    /// Sets the health (later calls are ignored).
    pub fn set(&self, health: Arc<dyn Health>) {
        let _ = self.0.set(health);
    }

    pub fn live(&self) -> Result<(), String> {
        self.0.get().map_or(Ok(()), |h| h.live())
    }

    pub fn ready(&self) -> Result<(), String> {
        self.0.get().map_or_else(|| Err("starting: loading models and connecting".into()), |h| h.ready())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Wedged;
    impl Health for Wedged {
        fn live(&self) -> Result<(), String> {
            Err("worker 1 made no progress for 301 s".into())
        }
        fn ready(&self) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn a_process_is_live_and_not_ready_until_its_health_is_known() {
        let slot = HealthSlot::default();
        assert!(slot.live().is_ok());
        assert!(slot.ready().unwrap_err().contains("starting"));
        slot.set(Arc::new(Wedged));
        assert!(slot.live().unwrap_err().contains("no progress"));
        assert!(slot.ready().is_ok());
        assert!(HealthSlot::with(Arc::new(Running)).ready().is_ok());
    }
}
