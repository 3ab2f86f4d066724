//! Model manifests (`models/<name>.toml`): what a model is, where its files are and how to feed it.
//! The shipped manifests are built into the binary so that `tidal serve` works with no files
//! beside it; `manifest_dir` points at a user's own.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The manifests shipped in `models/`.
const BUILT_IN: &[(&str, &str)] = &[
    ("sentiment", include_str!("../../models/sentiment.toml")),
    ("face-match", include_str!("../../models/face-match.toml")),
    ("ocr", include_str!("../../models/ocr.toml")),
    ("echo", include_str!("../../models/echo.toml")),
];

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
    #[serde(rename = "face-match")]
    face_match: Option<FaceMatchSpec>,
    ocr: Option<OcrSpec>,
    echo: Option<EchoSpec>,
}

/// Model kinds, each with its own settings.
#[derive(Debug, Clone)]
pub enum ModelKind {
    /// A Hugging Face–style sequence classifier: `input_ids`, `attention_mask` (optionally
    /// `token_type_ids`) → logits `[batch, labels]`, with a `tokenizer.json`.
    TextClassification(TextClassificationSpec),
    /// MTCNN detector (P-Net, R-Net, O-Net) + a 112×112 face embedder (MobileFaceNet family).
    FaceMatch(FaceMatchSpec),
    /// PP-OCR: DB text detector, optional 180° classifier, CTC recogniser.
    Ocr(OcrSpec),
    /// No model: the text's length (measures the pipeline's own cost).
    Echo(EchoSpec),
}

/// Settings of the echo model: none.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoSpec {}

/// Settings of a face matcher.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceMatchSpec {
    /// MTCNN proposal net (input `input_1` `[N, W, H, 3]`).
    pub pnet: PathBuf,
    /// MTCNN refinement net (input `input_2` `[N, 24, 24, 3]`).
    pub rnet: PathBuf,
    /// MTCNN output net with landmarks (input `input_3` `[N, 48, 48, 3]`).
    pub onet: PathBuf,
    /// Face embedder: `[N, 3, 112, 112]` RGB scaled `(x − 127.5) / 128` → `[N, dim]`.
    pub embedder: PathBuf,
    #[serde(default = "default_embedder_input")]
    pub embedder_input: String,
    #[serde(default = "default_embedder_output")]
    pub embedder_output: String,
    /// Cosine similarity at or above which two faces are the same person.
    pub threshold: f32,
    /// Smallest face searched for, in pixels.
    #[serde(default = "default_min_face")]
    pub min_face: f64,
    /// Smallest face searched for, as a share of the photo's shorter side (0: only
    /// `min_face`). The pyramid's largest levels exist only for the smallest faces, and cost
    /// the most: a photo whose face is a tenth of it needs none of them.
    #[serde(default)]
    pub min_face_ratio: f64,
    /// Image pyramid ratio.
    #[serde(default = "default_scale_factor")]
    pub scale_factor: f64,
    /// Score thresholds of the three detector stages.
    #[serde(default = "default_stage_thresholds")]
    pub stage_thresholds: [f64; 3],
    /// Faces per embedder run. On a CPU with one intra-op thread, batching MobileFaceNet was
    /// measured slower per face (11.6 ms at 1, 15–16 ms at 8), so the default is 1.
    #[serde(default = "default_one")]
    pub embed_batch: usize,
    /// Faces under `min_face` pixels of the photo scaled to this longest side are not searched:
    /// bounds the pyramid of a large photo, whose full-size levels took seconds and hundreds of
    /// MiB for a 12-megapixel photo. (The levels themselves are resampled from the photo.)
    #[serde(default = "default_detector_max_side")]
    pub detector_max_side: u32,
}

fn default_detector_max_side() -> u32 {
    800
}

fn default_one() -> usize {
    1
}

fn default_embedder_input() -> String {
    "input".into()
}
fn default_embedder_output() -> String {
    "embeddings".into()
}
fn default_min_face() -> f64 {
    20.0
}
fn default_scale_factor() -> f64 {
    0.709
}
fn default_stage_thresholds() -> [f64; 3] {
    [0.6, 0.7, 0.7]
}

/// Settings of an OCR pipeline (PP-OCR family).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcrSpec {
    /// DB text detector: `x` `[1, 3, H, W]` (BGR, H and W multiples of 32) → probability map.
    pub detector: PathBuf,
    /// CTC recogniser: `x` `[N, 3, 48, W]` → `[N, T, classes]`; its metadata key `character`
    /// holds the dictionary.
    pub recognizer: PathBuf,
    /// Optional 0°/180° text-line classifier: `[N, 3, 48, 192]` → `[N, 2]`.
    #[serde(default)]
    pub classifier: Option<PathBuf>,
    /// Detector input: the image is scaled so that its shorter side is this long ("min") or its
    /// longer side at most this long ("max"), then to multiples of 32.
    #[serde(default = "default_limit_side")]
    pub limit_side_len: u32,
    #[serde(default = "default_limit_type")]
    pub limit_type: LimitType,
    /// Images are first shrunk to at most this many pixels per side...
    #[serde(default = "default_max_side")]
    pub max_side_len: u32,
    /// ...and grown to at least this many.
    #[serde(default = "default_min_side")]
    pub min_side_len: u32,
    /// Probability above which a pixel is text.
    #[serde(default = "default_det_threshold")]
    pub det_threshold: f32,
    /// Mean probability inside a box below which it is dropped.
    #[serde(default = "default_box_threshold")]
    pub box_threshold: f32,
    /// How far a box is grown: area × ratio / perimeter.
    #[serde(default = "default_unclip_ratio")]
    pub unclip_ratio: f64,
    /// At most this many boxes per image.
    #[serde(default = "default_max_candidates")]
    pub max_candidates: usize,
    /// A line classified 180° with at least this score is turned.
    #[serde(default = "default_cls_threshold")]
    pub cls_threshold: f32,
    /// Lines with a lower mean character confidence are dropped.
    #[serde(default = "default_text_score")]
    pub text_score: f32,
    /// Crops per recogniser (and classifier) run, taken in order of aspect ratio.
    #[serde(default = "default_rec_batch")]
    pub rec_batch: usize,
}

/// How `limit_side_len` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitType {
    /// The shorter side is scaled up to the limit.
    Min,
    /// The longer side is scaled down to the limit.
    Max,
}

fn default_limit_side() -> u32 {
    736
}
fn default_limit_type() -> LimitType {
    LimitType::Min
}
fn default_max_side() -> u32 {
    2000
}
fn default_min_side() -> u32 {
    30
}
fn default_det_threshold() -> f32 {
    0.3
}
fn default_box_threshold() -> f32 {
    0.5
}
fn default_unclip_ratio() -> f64 {
    1.6
}
fn default_max_candidates() -> usize {
    1000
}
fn default_cls_threshold() -> f32 {
    0.9
}
fn default_text_score() -> f32 {
    0.5
}
fn default_rec_batch() -> usize {
    6
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
        let mut kinds: Vec<ModelKind> = Vec::new();
        kinds.extend(file.text_classification.map(ModelKind::TextClassification));
        kinds.extend(file.face_match.map(ModelKind::FaceMatch));
        kinds.extend(file.ocr.map(ModelKind::Ocr));
        kinds.extend(file.echo.map(ModelKind::Echo));
        if kinds.len() != 1 {
            return Err(Error::Config(format!(
                "model manifest {origin}: needs exactly one model kind table, one of [text-classification], \
                 [face-match], [ocr], [echo] (found {})",
                kinds.len()
            )));
        }
        let kind = kinds.remove(0);
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

    /// Every manifest: each `*.toml` in `dir` when a folder is given (sorted by name), else the
    /// built-in ones. Each comes with its source text.
    pub fn all(dir: Option<&Path>) -> Result<Vec<(Self, String)>> {
        let Some(dir) = dir else {
            return BUILT_IN
                .iter()
                .map(|(name, text)| Ok((Self::parse(text, &format!("built-in {name}.toml"))?, text.to_string())))
                .collect();
        };
        crate::config::read_toml_files(dir)?
            .into_iter()
            .map(|(path, text)| Ok((Self::parse(&text, &path.display().to_string())?, text)))
            .collect()
    }

    /// The kind's table name, as written in the manifest.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            ModelKind::TextClassification(_) => "text-classification",
            ModelKind::FaceMatch(_) => "face-match",
            ModelKind::Ocr(_) => "ocr",
            ModelKind::Echo(_) => "echo",
        }
    }

    /// The files the manifest names, relative to the model folder.
    pub fn files(&self) -> Vec<&Path> {
        match &self.kind {
            ModelKind::TextClassification(spec) => vec![&spec.model, &spec.tokenizer],
            ModelKind::FaceMatch(spec) => vec![&spec.pnet, &spec.rnet, &spec.onet, &spec.embedder],
            ModelKind::Ocr(spec) => {
                let mut files = vec![spec.detector.as_path(), spec.recognizer.as_path()];
                files.extend(spec.classifier.as_deref());
                files
            }
            ModelKind::Echo(_) => Vec::new(),
        }
    }

    /// Checks that the files a manifest names exist under `model_dir`.
    pub fn check_files(&self, model_dir: &Path) -> Result<()> {
        let files = self.files();
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
            ModelKind::FaceMatch(spec) => {
                if !(spec.scale_factor > 0.1 && spec.scale_factor < 0.95)
                    || spec.min_face < 12.0
                    || !(0.0..0.5).contains(&spec.min_face_ratio)
                    || spec.embed_batch == 0
                    || spec.detector_max_side < 64
                {
                    return Err(Error::Config(format!(
                        "model manifest {origin}: scale_factor must be in (0.1, 0.95), min_face at least 12, \
                         min_face_ratio in [0, 0.5), embed_batch at least 1 and detector_max_side at least 64"
                    )));
                }
            }
            ModelKind::Ocr(spec) => {
                if spec.rec_batch == 0 || spec.limit_side_len < 32 || spec.max_side_len < spec.min_side_len {
                    return Err(Error::Config(format!(
                        "model manifest {origin}: rec_batch must be at least 1, limit_side_len at least 32, \
                         max_side_len at least min_side_len"
                    )));
                }
            }
            ModelKind::Echo(_) => {}
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
        let ModelKind::TextClassification(spec) = &m.kind else { panic!("wrong kind") };
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
        assert!(err.contains("/nonexistent/sentiment/model-int8.onnx"), "{err}");
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
