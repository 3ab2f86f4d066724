//! `tidal models`: what a process would serve, before it serves it. Lists manifests with the state
//! of their files, describes one (its manifest and each ONNX file's inputs and outputs), and
//! verifies one end to end: load exactly as a worker does, decode a sample request with the
//! processor's own decoder and limits, run the model, show the result and the timings.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::codec::{decode_request, image_content_type, InputKind, RequestHeaders};
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::models::{self, Manifest};

/// One line of `tidal models list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelSummary {
    pub name: String,
    pub kind: &'static str,
    pub version: String,
    pub license: String,
    /// Files the manifest names that are not under the model folder.
    pub missing: Vec<PathBuf>,
}

/// What `tidal models verify` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verification {
    pub model: String,
    pub version: String,
    /// Loading every session, as a worker does at start-up.
    #[serde(with = "millis")]
    pub load: Duration,
    /// Decoding the sample and running the model on it.
    #[serde(with = "millis")]
    pub infer: Duration,
    /// The model's answer to the sample.
    pub result: serde_json::Value,
}

/// The manifests a process would see (`manifest_dir`, else the built-in ones) and their files.
pub fn list(manifest_dir: Option<&Path>, model_dir: &Path) -> Result<Vec<ModelSummary>> {
    Ok(Manifest::all(manifest_dir)?
        .into_iter()
        .map(|(manifest, _)| ModelSummary {
            kind: manifest.kind_name(),
            missing: manifest
                .files()
                .into_iter()
                .filter(|file| !model_dir.join(file).is_file())
                .map(Path::to_path_buf)
                .collect(),
            name: manifest.name,
            version: manifest.version,
            license: manifest.license,
        })
        .collect())
}

/// The manifest's text, then each file with its size and, for ONNX files, the graph's inputs and
/// outputs (names and types), which is what a manifest's tensor names must match.
pub fn describe(name: &str, manifest_dir: Option<&Path>, model_dir: &Path, onnxruntime: &Path) -> Result<String> {
    let (manifest, text) = find_with_text(name, manifest_dir)?;
    let mut out = format!("{}\n# files under {}\n", text.trim_end(), model_dir.display());
    let mut runtime_ready = false;
    for file in manifest.files() {
        let path = model_dir.join(file);
        let Ok(meta) = std::fs::metadata(&path) else {
            out.push_str(&format!("{}: MISSING (run scripts/setup.sh, or set TIDAL_MODEL_DIR)\n", file.display()));
            continue;
        };
        out.push_str(&format!("{}: {:.1} MB\n", file.display(), meta.len() as f64 / 1e6));
        if path.extension().is_some_and(|e| e == "onnx") {
            if !runtime_ready {
                models::init_onnxruntime(onnxruntime)?;
                runtime_ready = true;
            }
            let session = models::new_session(&path)?;
            for input in session.inputs() {
                out.push_str(&format!("  input  {}: {}\n", input.name(), input.dtype()));
            }
            for output in session.outputs() {
                out.push_str(&format!("  output {}: {}\n", output.name(), output.dtype()));
            }
        }
    }
    Ok(out)
}

/// Loads the model as a worker would and runs it on `sample` (a request value: JSON, or a raw
/// JPEG/PNG for single-image models), or on a built-in sample when none is given.
pub fn verify(
    name: &str,
    manifest_dir: Option<&Path>,
    model_dir: &Path,
    onnxruntime: &Path,
    sample: Option<Vec<u8>>,
    limits: &Limits,
) -> Result<Verification> {
    let manifest = Manifest::find(name, manifest_dir)?;
    manifest.check_files(model_dir)?;
    models::init_onnxruntime(onnxruntime)?;
    let started = Instant::now();
    let mut model = models::load(&manifest, model_dir)?;
    let load = started.elapsed();

    let value = sample.unwrap_or_else(|| built_in_sample(model.input_kind()));
    let headers = RequestHeaders { content_type: image_content_type(&value), id: Some("sample") };
    let started = Instant::now();
    let request = decode_request(model.input_kind(), Some(&value), headers, || "sample".into(), limits)
        .map_err(|bad| Error::Config(format!("the sample is not a valid request for {name}: {bad}")))?;
    let mut results = model.infer(&[&request.input])?;
    let infer = started.elapsed();
    let result = results.pop().ok_or_else(|| Error::Model {
        model: name.to_string(),
        reason: "the model returned no result for the sample".into(),
    })?;
    Ok(Verification { model: manifest.name, version: manifest.version, load, infer, result })
}

fn find_with_text(name: &str, manifest_dir: Option<&Path>) -> Result<(Manifest, String)> {
    let all = Manifest::all(manifest_dir)?;
    let names: Vec<String> = all.iter().map(|(m, _)| m.name.clone()).collect();
    all.into_iter().find(|(m, _)| m.name == name).ok_or_else(|| {
        Error::Config(format!("no model named '{name}' (known: {names:?}); `tidal models list` shows them"))
    })
}

/// A sample request per input kind: a review for text models; for image models a rendered line
/// of text (the OCR golden image), paired with itself for face matching (a valid request that
/// exercises the detector and answers "no face"; pass `--input` for a real pair).
fn built_in_sample(kind: InputKind) -> Vec<u8> {
    const TEXT_IMAGE: &[u8] = include_bytes!("../../tests/golden/ocr/sans-28.png");
    match kind {
        InputKind::Text => br#"{"id": "sample", "text": "A gripping, beautifully acted film."}"#.to_vec(),
        InputKind::Image => TEXT_IMAGE.to_vec(),
        InputKind::ImagePair => {
            use base64::Engine;
            let image = base64::engine::general_purpose::STANDARD.encode(TEXT_IMAGE);
            serde_json::json!({"id": "sample", "image_a": image, "image_b": image}).to_string().into_bytes()
        }
    }
}

/// Durations as fractional milliseconds in JSON.
mod millis {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1e4).round() / 10.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_built_in_manifests_and_their_missing_files() {
        let empty = tempfile::tempdir().unwrap();
        let models = list(None, empty.path()).unwrap();
        let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["sentiment", "face-match", "ocr", "echo"]);
        let sentiment = &models[0];
        assert_eq!(sentiment.kind, "text-classification");
        assert_eq!(sentiment.missing.len(), 2, "model.onnx and tokenizer.json are absent from an empty folder");
        assert!(models[3].missing.is_empty(), "echo needs no files");
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let err = describe("sentimnet", None, Path::new("/nonexistent"), Path::new("/nonexistent")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("'sentimnet'") && text.contains("sentiment") && text.contains("models list"), "{text}");
    }

    #[test]
    fn built_in_samples_decode_as_requests() {
        let limits = crate::config::ServeConfig::default().limits;
        for kind in [InputKind::Text, InputKind::Image, InputKind::ImagePair] {
            let value = built_in_sample(kind);
            let headers = RequestHeaders { content_type: image_content_type(&value), id: Some("sample") };
            let request = decode_request(kind, Some(&value), headers, || "x".into(), &limits);
            assert!(request.is_ok(), "{kind:?}: {request:?}");
        }
    }
}
