//! A 3-channel image of `f32` samples (row-major, channels interleaved), the working format of
//! the pipelines: crops stay in floating point between steps, as in the reference code.
use image::RgbImage;

/// Row-major, interleaved 3-channel `f32` image.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl FloatImage {
    /// A black image.
    pub fn zeros(width: usize, height: usize) -> Self {
        FloatImage { width, height, data: vec![0.0; width * height * 3] }
    }

    /// The pixels of an 8-bit image, channels kept in their order (RGB).
    pub fn from_rgb(image: &RgbImage) -> Self {
        FloatImage {
            width: image.width() as usize,
            height: image.height() as usize,
            data: image.as_raw().iter().map(|&v| f32::from(v)).collect(),
        }
    }

    /// The three samples at (x, y).
    #[inline]
    pub fn pixel(&self, x: usize, y: usize) -> [f32; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    #[inline]
    pub fn set_pixel(&mut self, x: usize, y: usize, value: [f32; 3]) {
        let i = (y * self.width + x) * 3;
        self.data[i..i + 3].copy_from_slice(&value);
    }

    /// Rounds and clamps every sample to 0..=255, as storing into an 8-bit image would.
    pub fn quantize(mut self) -> Self {
        for v in &mut self.data {
            *v = v.round().clamp(0.0, 255.0);
        }
        self
    }

    /// The sub-image `[x, x + width) × [y, y + height)`; pixels outside the source are black.
    pub fn crop(&self, x: i64, y: i64, width: usize, height: usize) -> Self {
        crop_from(self.width, self.height, |sx, sy| self.pixel(sx, sy), x, y, width, height)
    }

    /// [`crop`](Self::crop) straight from 8-bit pixels: only the sub-image is converted to floats.
    pub fn crop_rgb(image: &RgbImage, x: i64, y: i64, width: usize, height: usize) -> Self {
        let pixel = |sx: usize, sy: usize| image.get_pixel(sx as u32, sy as u32).0.map(f32::from);
        crop_from(image.width() as usize, image.height() as usize, pixel, x, y, width, height)
    }

    /// Rotated by 180 degrees.
    pub fn rotate180(&self) -> Self {
        let mut out = FloatImage::zeros(self.width, self.height);
        for y in 0..self.height {
            for x in 0..self.width {
                out.set_pixel(self.width - 1 - x, self.height - 1 - y, self.pixel(x, y));
            }
        }
        out
    }

    /// Rotated by 90 degrees counter-clockwise (NumPy's `rot90`).
    pub fn rotate90_ccw(&self) -> Self {
        let mut out = FloatImage::zeros(self.height, self.width);
        for y in 0..self.height {
            for x in 0..self.width {
                out.set_pixel(y, self.width - 1 - x, self.pixel(x, y));
            }
        }
        out
    }

    /// The same pixels with black rows added above and below.
    pub fn pad_vertical(&self, rows: usize) -> Self {
        let mut out = FloatImage::zeros(self.width, self.height + 2 * rows);
        let start = rows * self.width * 3;
        out.data[start..start + self.data.len()].copy_from_slice(&self.data);
        out
    }
}

fn crop_from(
    src_width: usize,
    src_height: usize,
    pixel: impl Fn(usize, usize) -> [f32; 3],
    x: i64,
    y: i64,
    width: usize,
    height: usize,
) -> FloatImage {
    let mut out = FloatImage::zeros(width, height);
    for row in 0..height {
        let sy = y + row as i64;
        if sy < 0 || sy >= src_height as i64 {
            continue;
        }
        for col in 0..width {
            let sx = x + col as i64;
            if sx >= 0 && sx < src_width as i64 {
                out.set_pixel(col, row, pixel(sx as usize, sy as usize));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cropping_8_bit_pixels_equals_cropping_their_float_copy() {
        let image = RgbImage::from_fn(23, 17, |x, y| image::Rgb([(x * 11) as u8, (y * 13) as u8, (x + y) as u8]));
        let whole = FloatImage::from_rgb(&image);
        for (x, y, w, h) in [(3, 2, 10, 9), (-4, -3, 12, 8), (18, 12, 9, 9), (30, 0, 4, 4)] {
            assert_eq!(FloatImage::crop_rgb(&image, x, y, w, h), whole.crop(x, y, w, h), "({x}, {y}) {w}×{h}");
        }
    }

    fn numbered(width: usize, height: usize) -> FloatImage {
        let data = (0..width * height).flat_map(|i| [i as f32, 0.0, 1.0]).collect();
        FloatImage { width, height, data }
    }

    #[test]
    fn rotations_move_corners_where_expected() {
        let image = numbered(3, 2);
        assert_eq!(image.rotate180().pixel(0, 0)[0], 5.0);
        let turned = image.rotate90_ccw();
        assert_eq!((turned.width, turned.height), (2, 3));
        // Top-right of the source becomes top-left.
        assert_eq!(turned.pixel(0, 0)[0], 2.0);
        assert_eq!(turned.pixel(1, 2)[0], 3.0);
    }

    #[test]
    fn crop_outside_the_image_is_black() {
        let image = numbered(3, 2);
        let crop = image.crop(-1, 1, 3, 2);
        assert_eq!(crop.pixel(0, 0), [0.0; 3]);
        assert_eq!(crop.pixel(1, 0)[0], 3.0);
        assert_eq!(crop.pixel(1, 1), [0.0; 3]);
    }

    #[test]
    fn padding_keeps_pixels_in_the_middle() {
        let padded = numbered(2, 1).pad_vertical(2);
        assert_eq!(padded.height, 5);
        assert_eq!(padded.pixel(1, 2)[0], 1.0);
        assert_eq!(padded.pixel(1, 0), [0.0; 3]);
    }
}
