//! Face match: are the faces in two images the same person?
//!
//! Per image: MTCNN finds faces and five landmarks; the largest face is aligned to the standard
//! 112×112 five-point template with a similarity transform; MobileFaceNet embeds it; the
//! embeddings are L2-normalised and compared by cosine. The faces of a batch go through the
//! embedder `embed_batch` at a time. An image without a face is an answer (`match: false` with a reason),
//! not an error.
mod mtcnn;

use std::path::Path;

use ndarray::Array4;
use ort::session::Session;
use serde_json::{json, Value};

pub use mtcnn::{DetectorSettings, Face, Mtcnn};

use super::{FaceMatchSpec, Manifest, Model};
use crate::codec::{Input, InputKind};
use crate::error::{Error, Result};
use crate::vision::{similarity_transform, warp_affine, Border, FloatImage, Point};

/// Landmark positions in a 112×112 aligned face (the ArcFace template).
pub const TEMPLATE_112: [Point; 5] = [
    Point::new(38.2946, 51.6963),
    Point::new(73.5318, 51.5014),
    Point::new(56.0252, 71.7366),
    Point::new(41.5493, 92.3655),
    Point::new(70.7299, 92.2041),
];

/// What was found in one image.
#[derive(Debug, Clone)]
pub struct FaceAnalysis {
    /// Faces detected.
    pub faces: usize,
    /// The largest face, if any.
    pub largest: Option<Face>,
    /// Its L2-normalised embedding.
    pub embedding: Option<Vec<f32>>,
}

/// A loaded face matcher.
pub struct FaceMatcher {
    name: String,
    version: String,
    spec: FaceMatchSpec,
    detector: Mtcnn,
    embedder: Session,
}

impl FaceMatcher {
    /// Builds the four sessions and checks their tensor names.
    pub fn load(manifest: &Manifest, spec: &FaceMatchSpec, model_dir: &Path) -> Result<Self> {
        let detector = Mtcnn {
            pnet: super::new_session(&model_dir.join(&spec.pnet))?,
            rnet: super::new_session(&model_dir.join(&spec.rnet))?,
            onet: super::new_session(&model_dir.join(&spec.onet))?,
            settings: DetectorSettings {
                min_face: spec.min_face,
                scale_factor: spec.scale_factor,
                thresholds: spec.stage_thresholds,
            },
            model: manifest.name.clone(),
        };
        detector.check()?;
        let embedder = super::new_session(&model_dir.join(&spec.embedder))?;
        super::check_signature(&embedder, &manifest.name, &[&spec.embedder_input], &[&spec.embedder_output])?;
        Ok(FaceMatcher {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            spec: spec.clone(),
            detector,
            embedder,
        })
    }

    /// Detects, aligns and embeds the largest face of each image (one embedder run for all).
    pub fn analyse(&mut self, images: &[&image::RgbImage]) -> Result<Vec<FaceAnalysis>> {
        let mut analyses = Vec::with_capacity(images.len());
        let mut aligned = Vec::new();
        for image in images {
            let pixels = FloatImage::from_rgb(image);
            let faces = self.detector.detect(&pixels)?;
            let largest = faces.iter().max_by(|a, b| a.area().total_cmp(&b.area())).cloned();
            if let Some(face) = &largest {
                aligned.push(align(&pixels, face));
            }
            analyses.push(FaceAnalysis { faces: faces.len(), largest, embedding: None });
        }
        let mut embeddings = Vec::with_capacity(aligned.len());
        for run in aligned.chunks(self.spec.embed_batch) {
            embeddings.extend(self.embed(run)?);
        }
        let mut embeddings = embeddings.into_iter();
        for analysis in analyses.iter_mut().filter(|a| a.largest.is_some()) {
            analysis.embedding = embeddings.next();
        }
        Ok(analyses)
    }

    /// L2-normalised embeddings of aligned 112×112 faces.
    pub fn embed(&mut self, faces: &[FloatImage]) -> Result<Vec<Vec<f32>>> {
        if faces.is_empty() {
            return Ok(Vec::new());
        }
        let mut tensor = Array4::<f32>::zeros((faces.len(), 3, 112, 112));
        for (n, face) in faces.iter().enumerate() {
            for y in 0..112 {
                for x in 0..112 {
                    let p = face.pixel(x, y);
                    for c in 0..3 {
                        tensor[[n, c, y, x]] = (p[c] - 127.5) / 128.0;
                    }
                }
            }
        }
        let out = super::run_f32(
            &mut self.embedder,
            &self.name,
            &self.spec.embedder_input,
            tensor.view().into_dyn(),
            &[&self.spec.embedder_output],
        )?;
        let rows = out[0].shape().first().copied().unwrap_or(0);
        if out[0].ndim() != 2 || rows != faces.len() {
            return Err(Error::Model {
                model: self.name.clone(),
                reason: format!("embeddings have shape {:?}, expected [{}, dim]", out[0].shape(), faces.len()),
            });
        }
        Ok(out[0]
            .rows()
            .into_iter()
            .map(|row| {
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                row.iter().map(|v| v / norm).collect()
            })
            .collect())
    }

    fn result_json(&self, a: &FaceAnalysis, b: &FaceAnalysis) -> Value {
        let threshold = self.spec.threshold;
        let (similarity, reason) = match (&a.embedding, &b.embedding) {
            // Unit vectors: the dot product is the cosine, clamped because f32 rounding can step
            // just past ±1 (an image against itself gave 1.0000001).
            (Some(ea), Some(eb)) => (Some(ea.iter().zip(eb).map(|(x, y)| x * y).sum::<f32>().clamp(-1.0, 1.0)), None),
            (None, None) => (None, Some("no face found in image_a or image_b")),
            (None, _) => (None, Some("no face found in image_a")),
            (_, None) => (None, Some("no face found in image_b")),
        };
        let mut result = json!({
            "match": similarity.is_some_and(|s| s >= threshold),
            "similarity": similarity,
            "threshold": threshold,
            "faces_a": a.faces,
            "faces_b": b.faces,
            "face_a": a.largest.as_ref().map(face_json),
            "face_b": b.largest.as_ref().map(face_json),
        });
        if let Some(reason) = reason {
            result["reason"] = json!(reason);
        }
        result
    }
}

/// The face warped onto the 112×112 template (bilinear, black outside the image).
pub fn align(image: &FloatImage, face: &Face) -> FloatImage {
    let matrix = similarity_transform(&face.landmarks, &TEMPLATE_112);
    warp_affine(image, &matrix, 112, 112, Border::Black).quantize()
}

fn face_json(face: &Face) -> Value {
    let round = |v: f64| (v * 10.0).round() / 10.0;
    json!({
        "box": [round(face.x1), round(face.y1), round(face.x2), round(face.y2)],
        "confidence": (face.score * 1e4).round() / 1e4,
        "landmarks": face.landmarks.iter().map(|p| [round(p.x), round(p.y)]).collect::<Vec<_>>(),
    })
}

impl Model for FaceMatcher {
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn input_kind(&self) -> InputKind {
        InputKind::ImagePair
    }

    fn infer(&mut self, batch: &[&Input]) -> Result<Vec<Value>> {
        let mut images = Vec::with_capacity(batch.len() * 2);
        for input in batch {
            match input {
                Input::ImagePair(a, b) => images.extend([a, b]),
                _ => return Err(super::unexpected_input(&self.name, InputKind::ImagePair)),
            }
        }
        let analyses = self.analyse(&images)?;
        Ok(analyses.chunks(2).map(|pair| self.result_json(&pair[0], &pair[1])).collect())
    }
}
