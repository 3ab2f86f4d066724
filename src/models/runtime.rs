//! ONNX Runtime set-up: the shared library is loaded once per process (feature `load-dynamic`),
//! and every worker builds its own sessions with one intra-op thread, so that N workers use N
//! cores and never contend for a shared thread pool.

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::ep;
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

/// Builds a session for one worker: one intra-op thread, all graph optimisations, ONNX Runtime's
/// memory arena (tensors reused from run to run: right for text, whose shapes stay small).
pub fn new_session(model: &Path) -> Result<Session> {
    build_session(model, true, true)
}

/// [`new_session`] without the arena, for image models: their tensors follow each photo's size,
/// and an arena keeps the largest run's memory for good (measured on a 12-megapixel face pair:
/// the MTCNN arenas held ~190 MiB after one request). Each run's tensors are freed after it.
pub fn new_image_session(model: &Path) -> Result<Session> {
    build_session(model, false, false)
}

/// [`new_session`] with the arena but no memory patterns, for image models whose tensors are
/// bounded by their settings (OCR: every page is scaled to at most `max_side_len`). Without the
/// arena every tensor of 1 MiB or more is a fresh `mmap` (see `allocator`), and faulting those
/// pages in took a fifth of an OCR worker's time; the arena keeps at most the largest page's
/// tensors. No memory patterns: they are cached per input shape, and page and line sizes vary.
pub fn new_bounded_image_session(model: &Path) -> Result<Session> {
    build_session(model, true, false)
}

fn build_session(model: &Path, arena: bool, memory_pattern: bool) -> Result<Session> {
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
        .with_memory_pattern(memory_pattern)
        .map_err(|e| Error::ort(&context, e))?
        .with_execution_providers([ep::CPU::default().with_arena_allocator(arena).build()])
        .map_err(|e| Error::ort(&context, e))?
        .commit_from_file(model)
        .map_err(|e| Error::ort(&context, e))
}

/// Runs a session on one `f32` tensor and returns the named outputs, in the order asked.
pub fn run_f32(
    session: &mut Session,
    model: &str,
    input_name: &str,
    input: ndarray::ArrayViewD<'_, f32>,
    outputs: &[&str],
) -> Result<Vec<ndarray::ArrayD<f32>>> {
    let context = format!("running model '{model}'");
    let tensor = ort::value::TensorRef::from_array_view(input).map_err(|e| Error::ort(&context, e))?;
    let results = session.run(ort::inputs![input_name => tensor]).map_err(|e| Error::ort(&context, e))?;
    outputs
        .iter()
        .map(|name| {
            let value = results.get(*name).ok_or_else(|| Error::Model {
                model: model.to_string(),
                reason: format!("the ONNX model has no output '{name}'; fix the manifest"),
            })?;
            let array =
                value.try_extract_array::<f32>().map_err(|e| Error::ort(&format!("reading '{name}' of {model}"), e))?;
            Ok(array.to_owned())
        })
        .collect()
}

/// Fails when a session lacks an input or output the manifest names.
pub fn check_signature(session: &Session, model: &str, inputs: &[&str], outputs: &[&str]) -> Result<()> {
    let have_in: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    let have_out: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    for (wanted, have, what) in [(inputs, &have_in, "input"), (outputs, &have_out, "output")] {
        if let Some(missing) = wanted.iter().find(|name| !have.contains(name)) {
            return Err(Error::Model {
                model: model.to_string(),
                reason: format!("the ONNX model has no {what} '{missing}' (it has {have:?}); fix the manifest"),
            });
        }
    }
    Ok(())
}
