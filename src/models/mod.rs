//! Models: one trait ("a batch of decoded requests in, a batch of results out"), one
//! implementation per model kind, configured by a manifest (files, tensor names, labels, limits).

mod echo;
pub mod face_match;
mod manifest;
pub mod ocr;
mod runtime;
mod text_classification;

pub use manifest::{EchoSpec, FaceMatchSpec, LimitType, Manifest, ModelKind, OcrSpec, TextClassificationSpec};
pub use runtime::{
    check_signature, init_onnxruntime, new_bounded_image_session, new_image_session, new_session, run_f32,
};
pub use text_classification::{length_groups, TextClassifier};

use crate::codec::{Input, InputKind};
use crate::error::Result;

/// A loaded model, owned by one worker thread (ONNX Runtime sessions are not shared).
pub trait Model: Send {
    /// The manifest's name (also the topic suffix).
    fn name(&self) -> &str;
    /// The manifest's version, copied into every result.
    fn version(&self) -> &str;
    /// What requests for this model carry.
    fn input_kind(&self) -> InputKind;
    /// Runs the model on a batch; returns one JSON result per input, in order. An error means the
    /// batch as a whole failed; the caller retries the inputs one by one to isolate a bad one.
    fn infer(&mut self, batch: &[&Input]) -> Result<Vec<serde_json::Value>>;
}

/// The error for an input of the wrong kind (a routing bug, never a client's fault).
pub(crate) fn unexpected_input(model: &str, expected: InputKind) -> crate::Error {
    crate::Error::Model { model: model.to_string(), reason: format!("received an input that is not {expected:?}") }
}

/// Loads the model a manifest describes.
pub fn load(manifest: &Manifest, model_dir: &std::path::Path) -> Result<Box<dyn Model>> {
    match &manifest.kind {
        ModelKind::TextClassification(spec) => Ok(Box::new(TextClassifier::load(manifest, spec, model_dir)?)),
        ModelKind::FaceMatch(spec) => Ok(Box::new(face_match::FaceMatcher::load(manifest, spec, model_dir)?)),
        ModelKind::Ocr(spec) => Ok(Box::new(ocr::OcrPipeline::load(manifest, spec, model_dir)?)),
        ModelKind::Echo(_) => Ok(Box::new(echo::Echo::load(manifest))),
    }
}
