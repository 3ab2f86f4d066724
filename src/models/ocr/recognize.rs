//! Text-line recognition helpers: the recogniser's input layout and greedy CTC decoding.
use ndarray::{Array4, ArrayView2};

use crate::vision::{resize_linear, FloatImage};

/// Recogniser and classifier input height.
pub const LINE_HEIGHT: usize = 48;

/// The classes of a CTC recogniser: blank, the dictionary, then a space.
#[derive(Debug, Clone)]
pub struct Alphabet {
    symbols: Vec<String>,
}

impl Alphabet {
    /// From the newline-separated dictionary a PP-OCR recogniser carries in its metadata.
    pub fn from_dictionary(dictionary: &str) -> Self {
        let mut symbols = vec![String::new()];
        symbols.extend(dictionary.lines().map(str::to_string));
        symbols.push(" ".into());
        Alphabet { symbols }
    }

    /// Number of classes, blank included.
    pub fn classes(&self) -> usize {
        self.symbols.len()
    }

    /// Greedy CTC over per-step class probabilities `[steps, classes]`: best class per step,
    /// repeats merged, blanks dropped. The confidence is the mean probability of the kept steps.
    pub fn decode(&self, probs: ArrayView2<'_, f32>) -> (String, f32) {
        let mut text = String::new();
        let (mut sum, mut kept) = (0.0f32, 0usize);
        let mut previous = usize::MAX;
        for step in probs.rows() {
            let (best, p) =
                step.iter().enumerate().fold((0, f32::MIN), |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc });
            if best != 0 && best != previous {
                if let Some(symbol) = self.symbols.get(best) {
                    text.push_str(symbol);
                    sum += p;
                    kept += 1;
                }
            }
            previous = best;
        }
        (text, if kept == 0 { 0.0 } else { sum / kept as f32 })
    }
}

/// Crops as one `[N, 3, 48, width]` tensor: each resized to height 48 keeping its aspect (at most
/// `width` wide), scaled to ±1, right-padded with zeros.
pub fn line_batch(crops: &[&FloatImage], width: usize) -> Array4<f32> {
    let mut tensor = Array4::<f32>::zeros((crops.len(), 3, LINE_HEIGHT, width));
    for (n, crop) in crops.iter().enumerate() {
        let resized_width = scaled_width(crop, width);
        let resized = resize_linear(crop, resized_width, LINE_HEIGHT).quantize();
        fill_normalized(&mut tensor, n, &resized);
    }
    tensor
}

/// Writes `image` into batch row `n` of an NCHW tensor, scaled from 0..255 to ±1 (PP-OCR's
/// normalisation); the tensor's area beyond the image keeps its values (zero padding).
pub fn fill_normalized(tensor: &mut Array4<f32>, n: usize, image: &FloatImage) {
    for y in 0..image.height {
        for x in 0..image.width {
            let p = image.pixel(x, y);
            for c in 0..3 {
                tensor[[n, c, y, x]] = (p[c] / 255.0 - 0.5) / 0.5;
            }
        }
    }
}

/// Width of a crop at height 48, capped at `max_width`.
fn scaled_width(crop: &FloatImage, max_width: usize) -> usize {
    let ratio = crop.width as f64 / crop.height.max(1) as f64;
    ((LINE_HEIGHT as f64 * ratio).ceil() as usize).clamp(1, max_width)
}

/// Width over height.
pub fn aspect(crop: &FloatImage) -> f64 {
    crop.width as f64 / crop.height.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn ctc_merges_repeats_and_drops_blanks() {
        let alphabet = Alphabet::from_dictionary("a\nb");
        assert_eq!(alphabet.classes(), 4);
        // Steps: a, a, blank, a, b, space, space.
        let probs = array![
            [0.1, 0.8, 0.1, 0.0],
            [0.1, 0.6, 0.3, 0.0],
            [0.9, 0.1, 0.0, 0.0],
            [0.2, 0.7, 0.1, 0.0],
            [0.0, 0.1, 0.9, 0.0],
            [0.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let (text, confidence) = alphabet.decode(probs.view());
        assert_eq!(text, "aab ");
        assert!((confidence - (0.8 + 0.7 + 0.9 + 1.0) / 4.0).abs() < 1e-6);
        let (empty, zero) = alphabet.decode(array![[1.0f32, 0.0, 0.0, 0.0]].view());
        assert_eq!((empty.as_str(), zero), ("", 0.0));
    }

    #[test]
    fn line_batches_keep_aspect_and_pad() {
        let wide = FloatImage { width: 200, height: 20, data: vec![255.0; 200 * 20 * 3] };
        let narrow = FloatImage { width: 10, height: 20, data: vec![255.0; 10 * 20 * 3] };
        let tensor = line_batch(&[&wide, &narrow], 320);
        assert_eq!(tensor.shape(), &[2, 3, 48, 320]);
        // 10x20 at height 48 is 24 wide: white (1.0) up to there, padding (0.0) after.
        assert_eq!(tensor[[1, 0, 10, 23]], 1.0);
        assert_eq!(tensor[[1, 0, 10, 24]], 0.0);
        assert_eq!(tensor[[0, 2, 47, 319]], 1.0);
    }
}
