//! MTCNN face detection (Zhang et al., 2016) as in the widely used Keras port: an image pyramid
//! through P-Net proposes boxes, R-Net refines them on 24×24 crops, O-Net on 48×48 crops adds
//! five landmarks (eyes, nose, mouth corners).
//!
//! The nets of this family were converted from Keras and expect every image with height and
//! width swapped (tensor `[N, width, height, 3]`); crops are taken with the original's 1-based
//! offsets and zero padding so that boxes match the reference implementation.
use image::RgbImage;
use ndarray::{Array4, ArrayD, Ix2, Ix4};
use ort::session::Session;

use crate::error::{Error, Result};
use crate::models::run_f32;
use crate::vision::{resize_area, resize_area_rgb, FloatImage, Point};

/// A detected face: box corners, confidence and five landmarks, in source-image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
    pub score: f64,
    /// Left eye, right eye, nose, left mouth corner, right mouth corner.
    pub landmarks: [Point; 5],
}

impl Face {
    pub fn area(&self) -> f64 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }

    /// The face in an image whose origin moved by (`dx`, `dy`).
    pub fn shifted(&self, dx: f64, dy: f64) -> Face {
        Face {
            x1: self.x1 + dx,
            y1: self.y1 + dy,
            x2: self.x2 + dx,
            y2: self.y2 + dy,
            score: self.score,
            landmarks: self.landmarks.map(|p| Point::new(p.x + dx, p.y + dy)),
        }
    }
}

/// Detector settings (from the manifest).
#[derive(Debug, Clone, Copy)]
pub struct DetectorSettings {
    /// Smallest face searched for, in pixels.
    pub min_face: f64,
    /// Smallest face as a share of the image's shorter side (0: `min_face` only).
    pub min_face_ratio: f64,
    /// Ratio between successive pyramid levels.
    pub scale_factor: f64,
    /// Score thresholds of P-Net, R-Net and O-Net.
    pub thresholds: [f64; 3],
    /// Faces under `min_face` pixels of the photo scaled to this longest side are not searched.
    pub max_side: u32,
}

/// The three nets, owned by one worker.
pub struct Mtcnn {
    pub pnet: Session,
    pub rnet: Session,
    pub onet: Session,
    pub settings: DetectorSettings,
    pub model: String,
}

/// A candidate box between stages: corners, score and the regression offsets to apply.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    x1: f64,
    y1: f64,
    x2: f64,
    y2: f64,
    score: f64,
    reg: [f64; 4],
}

const PNET: (&str, [&str; 2]) = ("input_1", ["conv2d_4", "softmax"]);
const RNET: (&str, [&str; 2]) = ("input_2", ["dense_2", "softmax_1"]);
const ONET: (&str, [&str; 3]) = ("input_3", ["dense_5", "dense_6", "softmax_2"]);

impl Mtcnn {
    /// Checks that the three sessions have this family's tensor names.
    pub fn check(&self) -> Result<()> {
        crate::models::check_signature(&self.pnet, &self.model, &[PNET.0], &PNET.1)?;
        crate::models::check_signature(&self.rnet, &self.model, &[RNET.0], &RNET.1)?;
        crate::models::check_signature(&self.onet, &self.model, &[ONET.0], &ONET.1)
    }

    /// Every face found in `photo`, best first after the last suppression. Every pyramid level
    /// and every crop is resampled from the photo's own pixels, as the reference does; only the
    /// levels and the crops are converted to floats, never the whole photo.
    pub fn detect(&mut self, photo: &RgbImage) -> Result<Vec<Face>> {
        let proposals = self.propose(photo)?;
        if proposals.is_empty() {
            return Ok(Vec::new());
        }
        let refined = self.refine(photo, &proposals)?;
        if refined.is_empty() {
            return Ok(Vec::new());
        }
        self.output(photo, &refined)
    }

    /// The pyramid scales: the photo's ladder — the first level maps `min_face` pixels to P-Net's
    /// 12-pixel window, each next one is `scale_factor` smaller — less the levels for faces under
    /// `min_face_ratio` of the photo's shorter side, or under `min_face` pixels of the photo
    /// scaled to `max_side`. Cutting levels off the ladder (rather than starting a ladder at the
    /// smallest face, or detecting on a scaled copy) keeps the levels a detector on the whole
    /// photo uses, and with them its boxes and landmarks.
    fn scales(&self, width: usize, height: usize) -> Vec<f64> {
        let settings = &self.settings;
        let (shorter, longer) = (width.min(height) as f64, width.max(height) as f64);
        let first = 12.0 / settings.min_face;
        let largest =
            first.min(12.0 / (settings.min_face_ratio * shorter)).min(first * f64::from(settings.max_side) / longer);
        let mut scales = Vec::new();
        let mut scale = first;
        while shorter * scale >= 12.0 {
            if scale <= largest * (1.0 + 1e-9) {
                scales.push(scale);
            }
            scale *= settings.scale_factor;
        }
        scales
    }

    /// Stage 1: P-Net over the pyramid; returns square integer boxes.
    fn propose(&mut self, photo: &RgbImage) -> Result<Vec<Candidate>> {
        let mut all = Vec::new();
        let (photo_width, photo_height) = (photo.width() as usize, photo.height() as usize);
        for scale in self.scales(photo_width, photo_height) {
            let width = (photo_width as f64 * scale).ceil() as usize;
            let height = (photo_height as f64 * scale).ceil() as usize;
            if width < 12 || height < 12 {
                continue;
            }
            let scaled = resize_area_rgb(photo, width, height).quantize();
            let input = transposed_batch(std::slice::from_ref(&scaled));
            let out = run_f32(&mut self.pnet, &self.model, PNET.0, input.view().into_dyn(), &PNET.1)?;
            let (reg, prob) = (as4(&out[0], &self.model)?, as4(&out[1], &self.model)?);
            let mut found = Vec::new();
            for col in 0..prob.shape()[1] {
                for row in 0..prob.shape()[2] {
                    let score = f64::from(prob[[0, col, row, 1]]);
                    if score < self.settings.thresholds[0] {
                        continue;
                    }
                    let (c, r) = (col as f64, row as f64);
                    found.push(Candidate {
                        x1: ((2.0 * c + 1.0) / scale).trunc(),
                        y1: ((2.0 * r + 1.0) / scale).trunc(),
                        x2: ((2.0 * c + 12.0) / scale).trunc(),
                        y2: ((2.0 * r + 12.0) / scale).trunc(),
                        score,
                        reg: std::array::from_fn(|k| f64::from(reg[[0, col, row, k]])),
                    });
                }
            }
            all.extend(nms(found, 0.5, Overlap::Union));
        }
        let mut boxes = nms(all, 0.7, Overlap::Union);
        for b in &mut boxes {
            let (w, h) = (b.x2 - b.x1, b.y2 - b.y1);
            *b = Candidate {
                x1: b.x1 + b.reg[0] * w,
                y1: b.y1 + b.reg[1] * h,
                x2: b.x2 + b.reg[2] * w,
                y2: b.y2 + b.reg[3] * h,
                ..*b
            };
            *b = square(*b);
            b.x1 = b.x1.trunc();
            b.y1 = b.y1.trunc();
            b.x2 = b.x2.trunc();
            b.y2 = b.y2.trunc();
        }
        Ok(boxes)
    }

    /// Stage 2: R-Net on 24×24 crops of the proposals.
    fn refine(&mut self, image: &RgbImage, proposals: &[Candidate]) -> Result<Vec<Candidate>> {
        let crops: Vec<FloatImage> = proposals.iter().map(|b| crop_box(image, b, 24)).collect();
        let input = transposed_batch(&crops);
        let out = run_f32(&mut self.rnet, &self.model, RNET.0, input.view().into_dyn(), &RNET.1)?;
        let (reg, prob) = (as2(&out[0], &self.model)?, as2(&out[1], &self.model)?);
        let kept: Vec<Candidate> = proposals
            .iter()
            .enumerate()
            .filter(|(i, _)| f64::from(prob[[*i, 1]]) > self.settings.thresholds[1])
            .map(|(i, b)| Candidate {
                score: f64::from(prob[[i, 1]]),
                reg: std::array::from_fn(|k| f64::from(reg[[i, k]])),
                ..*b
            })
            .collect();
        Ok(nms(kept, 0.7, Overlap::Union).into_iter().map(|b| square(regress(b))).collect())
    }

    /// Stage 3: O-Net on 48×48 crops; boxes, scores and landmarks.
    fn output(&mut self, image: &RgbImage, refined: &[Candidate]) -> Result<Vec<Face>> {
        let boxes: Vec<Candidate> = refined
            .iter()
            .map(|b| Candidate { x1: b.x1.trunc(), y1: b.y1.trunc(), x2: b.x2.trunc(), y2: b.y2.trunc(), ..*b })
            .collect();
        let crops: Vec<FloatImage> = boxes.iter().map(|b| crop_box(image, b, 48)).collect();
        let input = transposed_batch(&crops);
        let out = run_f32(&mut self.onet, &self.model, ONET.0, input.view().into_dyn(), &ONET.1)?;
        let (reg, points, prob) = (as2(&out[0], &self.model)?, as2(&out[1], &self.model)?, as2(&out[2], &self.model)?);
        let mut faces: Vec<(Candidate, [Point; 5])> = Vec::new();
        for (i, b) in boxes.iter().enumerate() {
            let score = f64::from(prob[[i, 1]]);
            if score <= self.settings.thresholds[2] {
                continue;
            }
            let (w, h) = (b.x2 - b.x1 + 1.0, b.y2 - b.y1 + 1.0);
            let landmarks = std::array::from_fn(|k| {
                Point::new(w * f64::from(points[[i, k]]) + b.x1 - 1.0, h * f64::from(points[[i, k + 5]]) + b.y1 - 1.0)
            });
            let candidate = Candidate { score, reg: std::array::from_fn(|k| f64::from(reg[[i, k]])), ..*b };
            faces.push((regress(candidate), landmarks));
        }
        let kept = nms_indices(&faces.iter().map(|(b, _)| *b).collect::<Vec<_>>(), 0.7, Overlap::Min);
        Ok(kept
            .into_iter()
            .map(|i| {
                let (b, landmarks) = faces[i];
                Face { x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2, score: b.score, landmarks }
            })
            .collect())
    }
}

/// Images → `[N, width, height, 3]`, scaled to about ±1 as the nets expect.
fn transposed_batch(images: &[FloatImage]) -> Array4<f32> {
    let (w, h) = images.first().map_or((0, 0), |i| (i.width, i.height));
    let mut tensor = Array4::<f32>::zeros((images.len(), w, h, 3));
    for (n, image) in images.iter().enumerate() {
        for y in 0..h {
            for x in 0..w {
                let p = image.pixel(x, y);
                for c in 0..3 {
                    tensor[[n, x, y, c]] = (p[c] - 127.5) * 0.0078125;
                }
            }
        }
    }
    tensor
}

/// The box's pixels (1-based corners, as in the original), zero outside the image, resized. Only
/// the box is converted to floats.
fn crop_box(image: &RgbImage, b: &Candidate, size: usize) -> FloatImage {
    let width = (b.x2 - b.x1 + 1.0).max(1.0) as usize;
    let height = (b.y2 - b.y1 + 1.0).max(1.0) as usize;
    let patch = FloatImage::crop_rgb(image, b.x1 as i64 - 1, b.y1 as i64 - 1, width, height);
    resize_area(&patch, size, size)
}

/// Applies the box regression, offsets relative to the inclusive box size.
fn regress(b: Candidate) -> Candidate {
    let (w, h) = (b.x2 - b.x1 + 1.0, b.y2 - b.y1 + 1.0);
    Candidate {
        x1: b.x1 + b.reg[0] * w,
        y1: b.y1 + b.reg[1] * h,
        x2: b.x2 + b.reg[2] * w,
        y2: b.y2 + b.reg[3] * h,
        ..b
    }
}

/// The square of the box's longer side, on the same centre.
fn square(b: Candidate) -> Candidate {
    let (w, h) = (b.x2 - b.x1, b.y2 - b.y1);
    let side = w.max(h);
    let x1 = b.x1 + w * 0.5 - side * 0.5;
    let y1 = b.y1 + h * 0.5 - side * 0.5;
    Candidate { x1, y1, x2: x1 + side, y2: y1 + side, ..b }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Overlap {
    /// Intersection over union.
    Union,
    /// Intersection over the smaller box.
    Min,
}

fn nms(boxes: Vec<Candidate>, threshold: f64, overlap: Overlap) -> Vec<Candidate> {
    nms_indices(&boxes, threshold, overlap).into_iter().map(|i| boxes[i]).collect()
}

/// Greedy non-maximum suppression; indices of the kept boxes, best first.
fn nms_indices(boxes: &[Candidate], threshold: f64, overlap: Overlap) -> Vec<usize> {
    let area = |b: &Candidate| (b.x2 - b.x1 + 1.0) * (b.y2 - b.y1 + 1.0);
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| boxes[b].score.total_cmp(&boxes[a].score));
    let mut kept = Vec::new();
    while let Some((&best, rest)) = order.split_first() {
        kept.push(best);
        let a = &boxes[best];
        order = rest
            .iter()
            .copied()
            .filter(|&i| {
                let b = &boxes[i];
                let w = (a.x2.min(b.x2) - a.x1.max(b.x1) + 1.0).max(0.0);
                let h = (a.y2.min(b.y2) - a.y1.max(b.y1) + 1.0).max(0.0);
                let inter = w * h;
                let ratio = match overlap {
                    Overlap::Union => inter / (area(a) + area(b) - inter),
                    Overlap::Min => inter / area(a).min(area(b)),
                };
                ratio <= threshold
            })
            .collect();
    }
    kept
}

fn as4<'a>(array: &'a ArrayD<f32>, model: &str) -> Result<ndarray::ArrayView4<'a, f32>> {
    array.view().into_dimensionality::<Ix4>().map_err(|_| shape_error(array, model, 4))
}

fn as2<'a>(array: &'a ArrayD<f32>, model: &str) -> Result<ndarray::ArrayView2<'a, f32>> {
    array.view().into_dimensionality::<Ix2>().map_err(|_| shape_error(array, model, 2))
}

fn shape_error(array: &ArrayD<f32>, model: &str, rank: usize) -> Error {
    Error::Model {
        model: model.to_string(),
        reason: format!("a detector output has shape {:?}, expected rank {rank}", array.shape()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(x1: f64, y1: f64, x2: f64, y2: f64, score: f64) -> Candidate {
        Candidate { x1, y1, x2, y2, score, reg: [0.0; 4] }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let boxes =
            vec![cand(0.0, 0.0, 10.0, 10.0, 0.8), cand(1.0, 1.0, 11.0, 11.0, 0.9), cand(50.0, 50.0, 60.0, 60.0, 0.7)];
        let kept = nms_indices(&boxes, 0.5, Overlap::Union);
        assert_eq!(kept, vec![1, 2]);
        // A small box inside a big one overlaps fully by the Min measure, little by Union.
        let nested = vec![cand(0.0, 0.0, 100.0, 100.0, 0.9), cand(10.0, 10.0, 20.0, 20.0, 0.8)];
        assert_eq!(nms_indices(&nested, 0.7, Overlap::Union), vec![0, 1]);
        assert_eq!(nms_indices(&nested, 0.7, Overlap::Min), vec![0]);
    }

    #[test]
    fn square_keeps_the_centre() {
        let s = square(cand(10.0, 20.0, 30.0, 60.0, 1.0));
        assert_eq!((s.x1, s.y1, s.x2, s.y2), (0.0, 20.0, 40.0, 60.0));
    }
}
