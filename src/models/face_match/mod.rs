//! Face match: are the faces in two images the same person?
//!
//! Per image: MTCNN finds faces and five landmarks; the largest face is aligned to the standard
//! 112×112 five-point template with a similarity transform; MobileFaceNet embeds it; the
//! embeddings are L2-normalised and compared by cosine. The detector resamples its pyramid levels
//! and crops from the photo itself and skips the levels for faces under `min_face_ratio` of the
//! photo (or under `min_face` pixels at `detector_max_side`), so a large photo costs the detector
//! little more than a small one, no float copy of the whole photo is made, and the boxes are the
//! ones a detector on the whole photo finds. The faces of a batch go through the
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
            pnet: super::new_image_session(&model_dir.join(&spec.pnet))?,
            rnet: super::new_image_session(&model_dir.join(&spec.rnet))?,
            onet: super::new_image_session(&model_dir.join(&spec.onet))?,
            settings: DetectorSettings {
                min_face: spec.min_face,
                min_face_ratio: spec.min_face_ratio,
                scale_factor: spec.scale_factor,
                thresholds: spec.stage_thresholds,
                max_side: spec.detector_max_side,
            },
            model: manifest.name.clone(),
        };
        detector.check()?;
        let embedder = super::new_image_session(&model_dir.join(&spec.embedder))?;
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
            let (faces, aligned_face) = self.detect_and_align(image)?;
            let largest = largest(&faces).cloned();
            aligned.extend(aligned_face);
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

    /// Every face of `image` and the largest one aligned (from a crop of the photo: no float copy
    /// of the whole photo is made).
    fn detect_and_align(&mut self, image: &image::RgbImage) -> Result<(Vec<Face>, Option<FloatImage>)> {
        let faces = self.detector.detect(image)?;
        let aligned = largest(&faces).map(|face| align_from_crop(image, face));
        Ok((faces, aligned))
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

/// [`align`] from a crop of `image`: the source region the 112×112 template samples (its corners
/// mapped back through the alignment, plus a pixel for bilinear sampling), so the float copy is
/// the size of the face, never of the photo.
fn align_from_crop(image: &image::RgbImage, face: &Face) -> FloatImage {
    let [[a, b, c], [d, e, f]] = similarity_transform(&face.landmarks, &TEMPLATE_112);
    let det = a * e - b * d;
    if det.abs() < 1e-12 {
        return FloatImage::zeros(112, 112);
    }
    let source = |x: f64, y: f64| ((e * (x - c) - b * (y - f)) / det, (a * (y - f) - d * (x - c)) / det);
    let corners = [source(0.0, 0.0), source(112.0, 0.0), source(0.0, 112.0), source(112.0, 112.0)];
    let (min_x, max_x) = corners.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let (min_y, max_y) = corners.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let clamp = |v: f64, limit: u32| v.clamp(0.0, f64::from(limit)) as u32;
    let (x0, y0) = (clamp(min_x.floor() - 1.0, image.width()), clamp(min_y.floor() - 1.0, image.height()));
    let (x1, y1) = (clamp(max_x.ceil() + 2.0, image.width()), clamp(max_y.ceil() + 2.0, image.height()));
    if x1 <= x0 || y1 <= y0 {
        return FloatImage::zeros(112, 112);
    }
    let crop = FloatImage::crop_rgb(image, i64::from(x0), i64::from(y0), (x1 - x0) as usize, (y1 - y0) as usize);
    align(&crop, &face.shifted(-f64::from(x0), -f64::from(y0)))
}

fn largest(faces: &[Face]) -> Option<&Face> {
    faces.iter().max_by(|a, b| a.area().total_cmp(&b.area()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligning_from_the_crop_equals_aligning_from_the_whole_image() {
        let image = image::RgbImage::from_fn(900, 700, |x, y| {
            image::Rgb([(x * 7 % 251) as u8, (y * 11 % 241) as u8, ((x * y) % 239) as u8])
        });
        let face = |dx: f64, dy: f64, scale: f64| Face {
            x1: dx,
            y1: dy,
            x2: dx + 100.0 * scale,
            y2: dy + 120.0 * scale,
            score: 1.0,
            landmarks: [(30.0, 45.0), (72.0, 43.0), (52.0, 68.0), (35.0, 92.0), (68.0, 91.0)]
                .map(|(x, y)| Point::new(dx + x * scale, dy + y * scale)),
        };
        let whole = FloatImage::from_rgb(&image);
        // Inside the photo, large and small, and overlapping its edges.
        for f in [face(300.0, 200.0, 1.0), face(120.0, 80.0, 3.3), face(-40.0, 620.0, 1.5), face(830.0, -30.0, 0.7)] {
            assert_eq!(align_from_crop(&image, &f), align(&whole, &f), "{f:?}");
        }
    }
}
