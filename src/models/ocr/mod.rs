//! OCR: image → text lines in reading order (PP-OCR family).
//!
//! Per image: bound its size, pad very wide or very short images vertically, scale for the
//! detector (multiples of 32), detect text boxes (DB), and rectify each box into an upright crop.
//! Then, for all crops of the batch together (sorted by aspect so padding stays small, in runs of
//! `rec_batch`; 1 by default, as larger runs were measured slower on one CPU thread): the optional classifier turns lines it reads as upside down, and the CTC
//! recogniser reads them. Boxes are mapped back to the original image. When most lines of an
//! image were upside down, the page was, so its reading order is reversed.
//!
//! The detector and recogniser take BGR input (PaddleOCR reads images with OpenCV).
mod detect;
mod recognize;

use std::path::Path;

use ndarray::{Array4, Ix2, Ix3};
use ort::session::Session;
use serde_json::{json, Value};

pub use detect::{text_boxes, DbSettings};
pub use recognize::{Alphabet, LINE_HEIGHT};

#[cfg(test)]
use super::ModelKind;
use super::{LimitType, Manifest, Model, OcrSpec};
use crate::codec::{Input, InputKind};
use crate::error::{Error, Result};
use crate::vision::{
    perspective_transform, resize_linear, resize_linear_rgb, warp_perspective, Border, FloatImage, Point,
};

/// Narrowest recogniser input (PP-OCR's 320 × 48).
const MIN_LINE_WIDTH: usize = 320;
/// Classifier input width.
const CLS_WIDTH: usize = 192;
/// Images wider than this many heights, or shorter than `PAD_MIN_HEIGHT`, are padded vertically.
const PAD_WIDTH_RATIO: f64 = 8.0;
const PAD_MIN_HEIGHT: usize = 30;

/// One recognised line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub text: String,
    pub confidence: f32,
    /// tl, tr, br, bl in original-image pixels.
    pub corners: [Point; 4],
}

/// A loaded OCR pipeline.
pub struct OcrPipeline {
    name: String,
    version: String,
    spec: OcrSpec,
    detector: Session,
    classifier: Option<Session>,
    recognizer: Session,
    alphabet: Alphabet,
    /// Output tensor names of the detector, recogniser and classifier (their first output).
    outputs: [String; 3],
}

/// A crop waiting for classification and recognition, and where it came from.
struct Crop {
    image: usize,
    corners: [Point; 4],
    pixels: FloatImage,
    flipped: bool,
}

/// How the detector's input relates to the original image.
struct Prepared {
    padded: FloatImage,
    pad_top: usize,
    ratio_w: f64,
    ratio_h: f64,
    original: (usize, usize),
}

impl OcrPipeline {
    /// Builds the sessions and reads the dictionary from the recogniser's metadata.
    pub fn load(manifest: &Manifest, spec: &OcrSpec, model_dir: &Path) -> Result<Self> {
        let model_error = |reason: String| Error::Model { model: manifest.name.clone(), reason };
        let detector = super::new_bounded_image_session(&model_dir.join(&spec.detector))?;
        super::check_signature(&detector, &manifest.name, &["x"], &[])?;
        let recognizer = super::new_bounded_image_session(&model_dir.join(&spec.recognizer))?;
        super::check_signature(&recognizer, &manifest.name, &["x"], &[])?;
        let classifier = match &spec.classifier {
            Some(path) => Some(super::new_bounded_image_session(&model_dir.join(path))?),
            None => None,
        };
        let dictionary = recognizer.metadata().ok().and_then(|m| m.custom("character")).ok_or_else(|| {
            model_error(format!("{} has no 'character' metadata (its dictionary)", spec.recognizer.display()))
        })?;
        let alphabet = Alphabet::from_dictionary(&dictionary);
        let first_output =
            |session: Option<&Session>| -> Result<String> {
                match session {
                    None => Ok(String::new()),
                    Some(session) => session.outputs().first().map(|o| o.name().to_string()).ok_or_else(|| {
                        model_error("an OCR model file has no outputs; check the manifest's files".into())
                    }),
                }
            };
        let outputs =
            [first_output(Some(&detector))?, first_output(Some(&recognizer))?, first_output(classifier.as_ref())?];
        Ok(OcrPipeline {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            spec: spec.clone(),
            detector,
            classifier,
            recognizer,
            alphabet,
            outputs,
        })
    }

    /// The lines of each image, in reading order.
    pub fn read(&mut self, images: &[&image::RgbImage]) -> Result<Vec<Vec<Line>>> {
        let mut crops = Vec::new();
        let mut prepared = Vec::with_capacity(images.len());
        for (index, image) in images.iter().enumerate() {
            let prep = prepare(&self.spec, image);
            for corners in self.detect(&prep.padded)? {
                if let Some(pixels) = rectify(&prep.padded, &corners) {
                    crops.push(Crop { image: index, corners, pixels, flipped: false });
                }
            }
            prepared.push(prep);
        }
        self.classify(&mut crops)?;
        let readings = self.recognise(&crops)?;
        let mut lines: Vec<Vec<Line>> = vec![Vec::new(); images.len()];
        let mut flipped = vec![(0usize, 0usize); images.len()];
        for (crop, (text, confidence)) in crops.iter().zip(readings) {
            if text.trim().is_empty() || confidence < self.spec.text_score {
                continue;
            }
            flipped[crop.image].0 += usize::from(crop.flipped);
            flipped[crop.image].1 += 1;
            let corners = to_original(&crop.corners, &prepared[crop.image]);
            lines[crop.image].push(Line { text, confidence, corners });
        }
        for (image_lines, (turned, total)) in lines.iter_mut().zip(flipped) {
            if turned * 2 > total {
                image_lines.reverse();
            }
        }
        Ok(lines)
    }

    /// Text boxes in the prepared image's coordinates, in reading order.
    fn detect(&mut self, image: &FloatImage) -> Result<Vec<[Point; 4]>> {
        let (w, h) = (image.width, image.height);
        let (rw, rh) = detector_size(&self.spec, w, h);
        let resized = resize_linear(image, rw, rh).quantize();
        let mut tensor = Array4::<f32>::zeros((1, 3, rh, rw));
        recognize::fill_normalized(&mut tensor, 0, &resized);
        let out = super::run_f32(&mut self.detector, &self.name, "x", tensor.view().into_dyn(), &[&self.outputs[0]])?;
        let map = out[0].view();
        let shape = map.shape().to_vec();
        if shape.len() != 4 || shape[0] != 1 || shape[1] != 1 {
            return Err(self.error(format!("the detector output has shape {shape:?}, expected [1, 1, H, W]")));
        }
        let prob = map.index_axis(ndarray::Axis(0), 0).index_axis_move(ndarray::Axis(0), 0);
        let prob = prob.into_dimensionality::<Ix2>().map_err(|e| self.error(e.to_string()))?;
        let settings = DbSettings {
            threshold: self.spec.det_threshold,
            box_threshold: self.spec.box_threshold,
            unclip_ratio: self.spec.unclip_ratio,
            max_candidates: self.spec.max_candidates,
        };
        Ok(text_boxes(prob, w, h, &settings))
    }

    /// Turns lines the classifier reads as upside down (with enough confidence).
    fn classify(&mut self, crops: &mut [Crop]) -> Result<()> {
        let name = self.name.clone();
        let Some(session) = self.classifier.as_mut() else { return Ok(()) };
        let order = by_aspect(crops.iter().map(|c| &c.pixels));
        for run in order.chunks(self.spec.rec_batch) {
            let batch: Vec<&FloatImage> = run.iter().map(|&i| &crops[i].pixels).collect();
            let tensor = recognize::line_batch(&batch, CLS_WIDTH);
            let out = super::run_f32(session, &name, "x", tensor.view().into_dyn(), &[&self.outputs[2]])?;
            let shape_error = || Error::Model {
                model: name.clone(),
                reason: format!("the classifier output has shape {:?}, expected [{}, 2]", out[0].shape(), run.len()),
            };
            let probs = out[0].view().into_dimensionality::<Ix2>().map_err(|_| shape_error())?;
            if probs.nrows() != run.len() || probs.ncols() < 2 {
                return Err(shape_error());
            }
            for (row, &i) in run.iter().enumerate() {
                if probs[[row, 1]] > probs[[row, 0]] && probs[[row, 1]] > self.spec.cls_threshold {
                    crops[i].pixels = crops[i].pixels.rotate180();
                    crops[i].flipped = true;
                }
            }
        }
        Ok(())
    }

    /// Text and confidence of every crop, in crop order.
    fn recognise(&mut self, crops: &[Crop]) -> Result<Vec<(String, f32)>> {
        let mut out = vec![(String::new(), 0.0); crops.len()];
        let order = by_aspect(crops.iter().map(|c| &c.pixels));
        for run in order.chunks(self.spec.rec_batch) {
            let batch: Vec<&FloatImage> = run.iter().map(|&i| &crops[i].pixels).collect();
            let widest =
                batch.iter().map(|c| recognize::aspect(c)).fold(MIN_LINE_WIDTH as f64 / LINE_HEIGHT as f64, f64::max);
            let width = (LINE_HEIGHT as f64 * widest) as usize;
            let tensor = recognize::line_batch(&batch, width);
            let result =
                super::run_f32(&mut self.recognizer, &self.name, "x", tensor.view().into_dyn(), &[&self.outputs[1]])?;
            let probs = result[0].view().into_dimensionality::<Ix3>().map_err(|e| self.error(e.to_string()))?;
            if probs.shape()[0] != run.len() || probs.shape()[2] != self.alphabet.classes() {
                return Err(self.error(format!(
                    "the recogniser output has shape {:?}, expected [{}, T, {}] (dictionary size + 2)",
                    probs.shape(),
                    run.len(),
                    self.alphabet.classes()
                )));
            }
            for (row, &i) in run.iter().enumerate() {
                out[i] = self.alphabet.decode(probs.index_axis(ndarray::Axis(0), row));
            }
        }
        Ok(out)
    }

    fn error(&self, reason: String) -> Error {
        Error::Model { model: self.name.clone(), reason }
    }
}

/// Bounds the size (linear resize to multiples of 32) and pads very wide or short images.
fn prepare(spec: &OcrSpec, image: &image::RgbImage) -> Prepared {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let (mut ratio_w, mut ratio_h) = (1.0, 1.0);
    let max_side = spec.max_side_len as f64;
    // A large photo is resized from its 8-bit pixels: no float copy of the whole photo.
    let mut pixels = if w.max(h) as f64 > max_side {
        let ratio = max_side / w.max(h) as f64;
        let (rw, rh) = (round32(w as f64 * ratio), round32(h as f64 * ratio));
        (ratio_w, ratio_h) = (w as f64 / rw as f64, h as f64 / rh as f64);
        resize_linear_rgb(image, rw, rh).quantize()
    } else {
        FloatImage::from_rgb(image)
    };
    // BGR, as the PaddleOCR models expect (a per-channel resize commutes with the swap).
    for px in pixels.data.chunks_exact_mut(3) {
        px.swap(0, 2);
    }
    let (cw, ch) = (pixels.width, pixels.height);
    let min_side = spec.min_side_len as f64;
    if (cw.min(ch) as f64) < min_side {
        // Never past max_side on the long side (a 2 × 2000 sliver would otherwise become 30 × 30000).
        let ratio = (min_side / cw.min(ch).max(1) as f64).min(max_side / cw.max(ch).max(1) as f64);
        let (rw, rh) = (round32(cw as f64 * ratio), round32(ch as f64 * ratio));
        pixels = resize_linear(&pixels, rw, rh).quantize();
        (ratio_w, ratio_h) = (cw as f64 / rw as f64, ch as f64 / rh as f64);
    }
    let (pw, ph) = (pixels.width, pixels.height);
    let mut pad_top = 0;
    if ph <= PAD_MIN_HEIGHT || pw as f64 / ph as f64 > PAD_WIDTH_RATIO {
        let new_h = ((pw as f64 / PAD_WIDTH_RATIO) as usize).max(PAD_MIN_HEIGHT) * 2;
        pad_top = new_h.abs_diff(ph) / 2;
        pixels = pixels.pad_vertical(pad_top);
    }
    Prepared { padded: pixels, pad_top, ratio_w, ratio_h, original: (w, h) }
}

/// Detector input size for a `width × height` image: scaled by the limit, then to multiples of 32.
fn detector_size(spec: &OcrSpec, width: usize, height: usize) -> (usize, usize) {
    let limit = f64::from(spec.limit_side_len);
    let ratio = match spec.limit_type {
        LimitType::Min if (width.min(height) as f64) < limit => limit / width.min(height).max(1) as f64,
        LimitType::Max if (width.max(height) as f64) > limit => limit / width.max(height) as f64,
        _ => 1.0,
    };
    (round32(width as f64 * ratio), round32(height as f64 * ratio))
}

/// Python's `round(x / 32) * 32` (ties to even), but at least 32 so that no side vanishes.
fn round32(value: f64) -> usize {
    ((value.trunc() / 32.0).round_ties_even() * 32.0).clamp(32.0, 1e6) as usize
}

/// Indices sorted by width / height.
fn by_aspect<'a>(crops: impl Iterator<Item = &'a FloatImage>) -> Vec<usize> {
    let aspects: Vec<f64> = crops.map(recognize::aspect).collect();
    let mut order: Vec<usize> = (0..aspects.len()).collect();
    order.sort_by(|&a, &b| aspects[a].total_cmp(&aspects[b]));
    order
}

/// The box's pixels as an upright rectangle; tall crops are turned to lie flat.
fn rectify(image: &FloatImage, corners: &[Point; 4]) -> Option<FloatImage> {
    let width = corners[0].distance(corners[1]).max(corners[2].distance(corners[3])) as usize;
    let height = corners[0].distance(corners[3]).max(corners[1].distance(corners[2])) as usize;
    if width == 0 || height == 0 {
        return None;
    }
    let (w, h) = (width as f64, height as f64);
    let target = [Point::new(0.0, 0.0), Point::new(w, 0.0), Point::new(w, h), Point::new(0.0, h)];
    let to_source = perspective_transform(&target, corners)?;
    let crop = warp_perspective(image, &to_source, width, height, Border::Replicate).quantize();
    Some(if height as f64 / width as f64 >= 1.5 { crop.rotate90_ccw() } else { crop })
}

/// Box corners in the original image: undo the padding, then the resize; clip to the image.
fn to_original(corners: &[Point; 4], prep: &Prepared) -> [Point; 4] {
    let (w, h) = prep.original;
    corners.map(|p| {
        Point::new(
            (p.x * prep.ratio_w).clamp(0.0, w as f64),
            ((p.y - prep.pad_top as f64) * prep.ratio_h).clamp(0.0, h as f64),
        )
    })
}

fn line_json(line: &Line) -> Value {
    json!({
        "text": line.text,
        "confidence": (f64::from(line.confidence) * 1e4).round() / 1e4,
        "box": line.corners.iter().map(|p| [p.x.round(), p.y.round()]).collect::<Vec<_>>(),
    })
}

impl Model for OcrPipeline {
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn input_kind(&self) -> InputKind {
        InputKind::Image
    }

    fn infer(&mut self, batch: &[&Input]) -> Result<Vec<Value>> {
        let images = batch
            .iter()
            .map(|input| match input {
                Input::Image(image) => Ok(image),
                _ => Err(super::unexpected_input(&self.name, InputKind::Image)),
            })
            .collect::<Result<Vec<_>>>()?;
        let lines = self.read(&images)?;
        Ok(lines
            .iter()
            .map(|lines| {
                let text: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
                json!({ "lines": lines.iter().map(line_json).collect::<Vec<_>>(), "text": text.join("\n") })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round32_matches_python() {
        assert_eq!(round32(736.0), 736);
        assert_eq!(round32(2355.2), 2368);
        assert_eq!(round32(16.0), 32, "never below 32");
        assert_eq!(round32(48.0), 64);
        assert_eq!(round32(80.0), 64);
    }

    fn spec() -> OcrSpec {
        let manifest = Manifest::find("ocr", None).unwrap();
        let ModelKind::Ocr(spec) = manifest.kind else { panic!("ocr kind") };
        spec
    }

    #[test]
    fn extreme_shapes_prepare_to_usable_sizes() {
        let spec = spec();
        for (w, h) in [(1, 1), (1, 8000), (8000, 1), (3, 2000), (2001, 2001), (31, 29)] {
            let prep = prepare(&spec, &image::RgbImage::new(w, h));
            let (pw, ph) = (prep.padded.width, prep.padded.height);
            assert!(pw >= 30 && ph >= 30 && pw <= 2048 && ph <= 2048 + 2 * 256, "{w}x{h} -> {pw}x{ph}");
            assert_eq!(prep.padded.data.len(), pw * ph * 3);
            let (dw, dh) = detector_size(&spec, pw, ph);
            assert!(
                dw % 32 == 0 && dh % 32 == 0 && dw >= 32 && dh >= 32 && dw.max(dh) <= 1024,
                "{pw}x{ph} -> {dw}x{dh}"
            );
        }
    }

    #[test]
    fn rectify_turns_tall_boxes() {
        let image = FloatImage::zeros(100, 100);
        let tall = [Point::new(10.0, 10.0), Point::new(20.0, 10.0), Point::new(20.0, 60.0), Point::new(10.0, 60.0)];
        let crop = rectify(&image, &tall).unwrap();
        assert_eq!((crop.width, crop.height), (50, 10));
    }
}
