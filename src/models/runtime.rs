//! ONNX Runtime set-up: the shared library is loaded once per process (feature `load-dynamic`),
//! and every worker builds its own sessions with one intra-op thread, so that N workers use N
//! cores and never contend for a shared thread pool.

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use crate::error::{Error, Result};

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();

/// Loads ONNX Runtime from `library` (once; later calls return the same environment).
pub fn init_onnxruntime(library: &Path) -> Result<&'static Environment> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    if !library.is_file() {
        return Err(Error::Ort(format!(
            "library {} not found: run scripts/setup.sh or set ORT_DYLIB_PATH to libonnxruntime.so (1.31+)",
            library.display()
        )));
    }
    let builder = ort::init_from(library).map_err(|e| Error::ort(&format!("loading {}", library.display()), e))?;
    let env = builder
        .with_name("tidal")
        .with_telemetry(false)
        .build()
        .map_err(|e| Error::ort("creating the environment", e))?;
    Ok(ENVIRONMENT.get_or_init(|| env))
}

/// Builds a session for one worker: one intra-op thread, all graph optimisations.
pub fn new_session(model: &Path) -> Result<Session> {
    let env = ENVIRONMENT
        .get()
        .ok_or_else(|| Error::Ort("ONNX Runtime is not initialised: call init_onnxruntime first".into()))?;
    let context = format!("loading {}", model.display());
    Session::builder(env)
        .map_err(|e| Error::ort(&context, e))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| Error::ort(&context, e))?
        .with_intra_threads(1)
        .map_err(|e| Error::ort(&context, e))?
        .with_inter_threads(1)
        .map_err(|e| Error::ort(&context, e))?
        .commit_from_file(model)
        .map_err(|e| Error::ort(&context, e))
}
