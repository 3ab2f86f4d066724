//! The requests every target answers, cycled in a fixed order so that each run sees the same mix:
//! for text models short film-review snippets (10–20 tokens, the size of a Rotten Tomatoes
//! snippet); for face-match pairs of the set-up's face photos (same person and different people);
//! for OCR the golden text pages.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;

use crate::codec::{self, Input, RequestHeaders};
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::models::ModelKind;

/// Face photos paired by the face-match corpus (JPEGs of 184–354 KB, so a pair stays under the
/// broker's default 1 MB record), from `$TIDAL_HOME/testdata/faces`.
const FACE_PHOTOS: &[&str] = &["obama.jpg", "obama2.jpg", "biden.jpg"];
/// Pairs of [`FACE_PHOTOS`]: the same person, then different people.
const FACE_PAIRS: &[(usize, usize)] = &[(0, 1), (0, 2), (1, 2)];
/// Text pages read by the OCR corpus (tests/golden/ocr).
const PAGES: &[&[u8]] = &[
    include_bytes!("../../tests/golden/ocr/sans-28.png"),
    include_bytes!("../../tests/golden/ocr/serif-22.png"),
    include_bytes!("../../tests/golden/ocr/mono-34.png"),
    include_bytes!("../../tests/golden/ocr/sans-26-rotated.png"),
];

/// The requests of one benchmark, for the model it measures.
#[derive(Debug, Clone)]
pub enum Corpus {
    Texts,
    /// Base64 JPEGs, paired by [`FACE_PAIRS`].
    FacePairs(Arc<Vec<String>>),
    /// Base64 PNGs.
    Pages(Arc<Vec<String>>),
}

impl Corpus {
    /// The corpus for a model kind; face photos come from `faces` (the set-up's test data).
    pub fn for_model(kind: &ModelKind, faces: &Path) -> Result<Self> {
        let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        Ok(match kind {
            ModelKind::TextClassification(_) | ModelKind::Echo(_) => Corpus::Texts,
            ModelKind::Ocr(_) => Corpus::Pages(Arc::new(PAGES.iter().map(|page| encode(page)).collect())),
            ModelKind::FaceMatch(_) => {
                let photos = FACE_PHOTOS
                    .iter()
                    .map(|name| {
                        let path = faces.join(name);
                        std::fs::read(&path).map(|bytes| encode(&bytes)).map_err(|e| {
                            Error::Bench(format!(
                                "cannot read the face photo {}: {e}; scripts/setup.sh installs them (or pass --faces DIR)",
                                path.display()
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Corpus::FacePairs(Arc::new(photos))
            }
        })
    }

    /// How many distinct requests the corpus cycles through.
    pub fn cycle(&self) -> u64 {
        match self {
            Corpus::Texts => TEXTS.len() as u64,
            Corpus::FacePairs(_) => FACE_PAIRS.len() as u64,
            Corpus::Pages(pages) => pages.len() as u64,
        }
    }

    /// The JSON request number `seq`, with id `r<seq>`.
    pub fn request(&self, seq: u64) -> String {
        let id = format!("r{seq}");
        let at = (seq % self.cycle()) as usize;
        match self {
            Corpus::Texts => serde_json::json!({ "id": id, "text": text(seq) }).to_string(),
            Corpus::FacePairs(photos) => {
                let (a, b) = FACE_PAIRS[at];
                serde_json::json!({ "id": id, "image_a": photos[a], "image_b": photos[b] }).to_string()
            }
            Corpus::Pages(pages) => serde_json::json!({ "id": id, "image": pages[at] }).to_string(),
        }
    }
}

const TEXTS: &[&str] = &[
    "An absolute masterpiece, moving and beautifully acted from the first scene to the last.",
    "A boring, clumsy mess that wastes its talented cast on a script nobody believed in.",
    "One of the best films of the year: funny, warm and wise without trying too hard.",
    "Worst two hours of my life, and the sequel is somehow even longer. Avoid.",
    "The plot was fine, but the ending dragged on far too long for my taste.",
    "A charming little comedy that never outstays its welcome.",
    "I loved every minute of this strange, tender and surprising film.",
    "Not my cup of tea, though the soundtrack is lovely and the actors try.",
    "Predictable, loud and hollow; the effects cannot hide the empty story.",
    "A quiet triumph that trusts its audience and rewards its patience.",
    "The jokes land rarely and the pacing is a chore to sit through.",
    "Gorgeous to look at and surprisingly moving in its final act.",
    "It wants to be clever but ends up smug, slow and forgettable.",
    "A smart, tense thriller with a performance you will remember for years.",
    "Too long, too loud and too pleased with itself to be any fun.",
    "Funny, sad and true: the rare crowd pleaser that earns its tears.",
];

/// The text of request number `seq`.
pub fn text(seq: u64) -> &'static str {
    TEXTS[(seq % TEXTS.len() as u64) as usize]
}

/// The JSON text request number `seq`: `{"id": "r<seq>", "text": ...}`.
pub fn request(seq: u64) -> String {
    Corpus::Texts.request(seq)
}

/// A request's JSON decoded as a worker decodes it (for images: base64, then the pixels).
pub fn decode(request: &str, kind: codec::InputKind, limits: &Limits) -> Result<Input> {
    codec::decode_request(kind, Some(request.as_bytes()), RequestHeaders::default(), String::new, limits)
        .map(|request| request.input)
        .map_err(|bad| Error::Bench(format!("the benchmark's own request is refused: {bad}")))
}

/// The sequence number back from a result's JSON value (`"id": "r<seq>"`).
pub fn seq_of_result(value: &[u8]) -> Option<u64> {
    answer_of_result(value, "").map(|(seq, _)| seq)
}

/// The request number a result answers, and whether it is a prediction of `model_version`: status
/// `ok`, from that version (a baseline answering from other model files is not comparable).
pub fn answer_of_result(value: &[u8], model_version: &str) -> Option<(u64, bool)> {
    let parsed: serde_json::Value = serde_json::from_slice(value).ok()?;
    let seq = parsed.get("id")?.as_str()?.strip_prefix('r')?.parse().ok()?;
    let field = |name: &str| parsed.get(name).and_then(|s| s.as_str());
    Some((seq, field("status") == Some("ok") && field("model_version") == Some(model_version)))
}

/// The `model_version` a result names.
pub fn version_of_result(value: &[u8]) -> Option<String> {
    let parsed: serde_json::Value = serde_json::from_slice(value).ok()?;
    Some(parsed.get("model_version")?.as_str()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_a_result() {
        let result = format!(r#"{{"id":"r{}","status":"ok"}}"#, 4242);
        assert_eq!(seq_of_result(result.as_bytes()), Some(4242));
        assert_eq!(seq_of_result(br#"{"id":"x1"}"#), None);
        assert_eq!(seq_of_result(b"not json"), None);
        let answer = |status: &str, version: &str| {
            let result = format!(r#"{{"id":"r7","model_version":"{version}","status":"{status}"}}"#);
            answer_of_result(result.as_bytes(), "int8-2")
        };
        assert_eq!(answer("ok", "int8-2"), Some((7, true)));
        assert_eq!(answer("error", "int8-2"), Some((7, false)));
        assert_eq!(answer("ok", "fp32-1"), Some((7, false)), "an answer from another model is not a prediction");
        assert_eq!(answer_of_result(br#"{"id":"r7","status":"ok"}"#, "int8-2"), Some((7, false)));
        assert_eq!(version_of_result(br#"{"id":"r7","model_version":"v3"}"#).as_deref(), Some("v3"));
        let request: serde_json::Value = serde_json::from_str(&request(17)).unwrap();
        assert_eq!(request["id"], "r17");
        assert_eq!(request["text"], text(1));
    }
}
