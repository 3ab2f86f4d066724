//! Model manifests (`models/<name>.toml`): what a model is, where its files are and how to feed it.
//! The shipped manifests are built into the binary so that `tidal serve` works with no files
//! beside it; `manifest_dir` points at a user's own.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The manifests shipped in `models/`.
const BUILT_IN: &[(&str, &str)] = &[("sentiment", include_str!("../../models/sentiment.toml"))];

/// A model manifest: common fields, then exactly one table named after the model kind
/// (`[text-classification]`, ...).
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Model name: results go to `<result_prefix><name>`, requests come from `<request_prefix><name>`.
    pub name: String,
    /// Version string copied into every result (`model_version`).
    pub version: String,
    /// Where the weights come from (for humans).
    pub origin: String,
    /// The weights' licence (for humans).
    pub license: String,
    /// The model kind and its settings.
    pub kind: ModelKind,
}

/// The manifest file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    name: String,
    version: String,
    #[serde(default)]
    origin: String,
    #[serde(default)]
    license: String,
    #[serde(rename = "text-classification")]
    text_classification: Option<TextClassificationSpec>,
}

/// Model kinds, each with its own settings.
#[derive(Debug, Clone)]
pub enum ModelKind {
    /// A Hugging Face–style sequence classifier: `input_ids`, `attention_mask` (optionally
    /// `token_type_ids`) → logits `[batch, labels]`, with a `tokenizer.json`.
    TextClassification(TextClassificationSpec),
}

/// Settings of a text classifier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextClassificationSpec {
    /// ONNX file, relative to the model folder (or absolute).
    pub model: PathBuf,
    /// `tokenizer.json` (Hugging Face tokenizers format), relative to the model folder.
    pub tokenizer: PathBuf,
    /// Label of each logit, in order.
    pub labels: Vec<String>,
    /// Texts are truncated to this many tokens (special tokens included).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// Name of the token ids input.
    #[serde(default = "default_input_ids")]
    pub input_ids: String,
    /// Name of the attention mask input.
    #[serde(default = "default_attention_mask")]
    pub attention_mask: String,
    /// Name of the token type ids input, for models that take one (BERT exports often do).
    #[serde(default)]
    pub token_type_ids: Option<String>,
    /// Name of the logits output.
    #[serde(default = "default_logits")]
    pub logits: String,
}

fn default_max_tokens() -> usize {
    128
}
fn default_input_ids() -> String {
    "input_ids".into()
}
fn default_attention_mask() -> String {
    "attention_mask".into()
}
fn default_logits() -> String {
    "logits".into()
}

impl Manifest {
    /// Parses a manifest; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let file: ManifestFile =
            toml::from_str(text).map_err(|e| Error::Config(format!("model manifest {origin}: {}", e.message())))?;
        let kind = match file.text_classification {
            Some(spec) => ModelKind::TextClassification(spec),
            None => {
                return Err(Error::Config(format!(
                    "model manifest {origin}: no model kind table; add one of [text-classification]"
                )))
            }
        };
        let manifest =
            Manifest { name: file.name, version: file.version, origin: file.origin, license: file.license, kind };
        manifest.check(origin)?;
        Ok(manifest)
    }

    /// Finds the manifest of `name`: `<dir>/<name>.toml` when a folder is given, else built-in.
    pub fn find(name: &str, dir: Option<&Path>) -> Result<Self> {
        if let Some(dir) = dir {
            let path = dir.join(format!("{name}.toml"));
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
            return Self::parse(&text, &path.display().to_string());
        }
        let known: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
        let (_, text) = BUILT_IN.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            Error::Config(format!(
                "unknown model '{name}': built-in models are {known:?}; for your own, set manifest_dir to a \
                 folder holding {name}.toml"
            ))
        })?;
        Self::parse(text, &format!("built-in {name}.toml"))
    }

    /// Checks that the files a manifest names exist under `model_dir`.
    pub fn check_files(&self, model_dir: &Path) -> Result<()> {
        let files: Vec<&Path> = match &self.kind {
            ModelKind::TextClassification(spec) => vec![&spec.model, &spec.tokenizer],
        };
        for file in files {
            let path = model_dir.join(file);
            if !path.is_file() {
                return Err(Error::Model {
                    model: self.name.clone(),
                    reason: format!(
                        "file {} is missing: run scripts/setup.sh to install the demo models, or set \
                         model_dir (TIDAL_MODEL_DIR) to the folder that holds it",
                        path.display()
                    ),
                });
            }
        }
        Ok(())
    }

    fn check(&self, origin: &str) -> Result<()> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(Error::Config(format!(
                "model manifest {origin}: name '{}' must use only letters, digits, '-', '_', '.' (it names topics)",
                self.name
            )));
        }
        match &self.kind {
            ModelKind::TextClassification(spec) => {
                if spec.labels.len() < 2 {
                    return Err(Error::Config(format!("model manifest {origin}: labels needs at least two entries")));
                }
                if spec.max_tokens < 3 {
                    return Err(Error::Config(format!("model manifest {origin}: max_tokens must be at least 3")));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_sentiment_manifest_parses() {
        let m = Manifest::find("sentiment", None).unwrap();
        let ModelKind::TextClassification(spec) = &m.kind;
        assert_eq!(spec.labels, vec!["negative", "positive"]);
        assert_eq!(spec.logits, "logits");
    }

    #[test]
    fn unknown_model_says_how_to_fix() {
        let err = Manifest::find("nope", None).unwrap_err().to_string();
        assert!(err.contains("manifest_dir"), "{err}");
    }

    #[test]
    fn missing_files_are_named() {
        let m = Manifest::find("sentiment", None).unwrap();
        let err = m.check_files(Path::new("/nonexistent")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/sentiment/model.onnx"), "{err}");
        assert!(err.contains("scripts/setup.sh"), "{err}");
    }

    #[test]
    fn bad_manifests_are_refused() {
        let one_label = "name = \"x\"\nversion = \"1\"\n[text-classification]\nmodel = \"m\"\ntokenizer = \"t\"\nlabels = [\"a\"]\n";
        assert!(Manifest::parse(one_label, "t").is_err());
        let typo = "name = \"x\"\nversion = \"1\"\n[text-classification]\nmodel = \"m\"\ntokenizer = \"t\"\nlabels = [\"a\", \"b\"]\nmax_token = 3\n";
        assert!(Manifest::parse(typo, "t").unwrap_err().to_string().contains("max_token"));
    }
}
