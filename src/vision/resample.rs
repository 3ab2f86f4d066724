//! Resizing and warping with OpenCV's sampling conventions (see the module docs of `vision`).
use image::RgbImage;

use super::FloatImage;

/// What a warp samples outside the source image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Border {
    /// Black (OpenCV `BORDER_CONSTANT`, value 0).
    Black,
    /// The nearest edge pixel (OpenCV `BORDER_REPLICATE`).
    Replicate,
}

/// Resize by box averaging when shrinking both axes (OpenCV `INTER_AREA`), bilinear otherwise.
pub fn resize_area(src: &FloatImage, width: usize, height: usize) -> FloatImage {
    if width > src.width || height > src.height || width == 0 || height == 0 {
        return resize_linear(src, width, height);
    }
    resize_area_from(&src.data, src.width, src.height, width, height)
}

/// [`resize_area`] straight from 8-bit pixels: the same values as
/// `resize_area(&FloatImage::from_rgb(src), ..)` without a float copy of the whole source.
pub fn resize_area_rgb(src: &RgbImage, width: usize, height: usize) -> FloatImage {
    if width > src.width() as usize || height > src.height() as usize || width == 0 || height == 0 {
        return resize_linear_rgb(src, width, height);
    }
    resize_area_from(src.as_raw(), src.width() as usize, src.height() as usize, width, height)
}

/// Area resize of interleaved 3-channel samples (`f32` or `u8`: the same layout), row slices
/// read directly (a photo's pyramid level reads every one of its pixels).
fn resize_area_from<T: Copy + Into<f32>>(
    data: &[T],
    src_width: usize,
    src_height: usize,
    width: usize,
    height: usize,
) -> FloatImage {
    let columns = area_weights(src_width, width);
    let rows = area_weights(src_height, height);
    // Horizontal pass: src_height × width.
    let mut wide = FloatImage::zeros(width, src_height);
    for (y, row) in data.chunks_exact(src_width * 3).take(src_height).enumerate() {
        for (x, taps) in columns.iter().enumerate() {
            let mut acc = [0.0f32; 3];
            for &(sx, w) in taps {
                let p: [f32; 3] = [row[sx * 3].into(), row[sx * 3 + 1].into(), row[sx * 3 + 2].into()];
                for c in 0..3 {
                    acc[c] += p[c] * w;
                }
            }
            wide.set_pixel(x, y, acc);
        }
    }
    let mut out = FloatImage::zeros(width, height);
    for (y, taps) in rows.iter().enumerate() {
        for x in 0..width {
            let mut acc = [0.0f32; 3];
            for &(sy, w) in taps {
                let p = wide.pixel(x, sy);
                for c in 0..3 {
                    acc[c] += p[c] * w;
                }
            }
            out.set_pixel(x, y, acc);
        }
    }
    out
}

/// For each output index, the source indices it covers and their share of its area.
fn area_weights(src: usize, dst: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let start = d as f64 * scale;
            let end = ((d + 1) as f64 * scale).min(src as f64);
            let mut taps = Vec::new();
            let mut s = start.floor() as usize;
            while (s as f64) < end && s < src {
                let lo = start.max(s as f64);
                let hi = end.min((s + 1) as f64);
                if hi > lo {
                    taps.push((s, ((hi - lo) / scale) as f32));
                }
                s += 1;
            }
            taps
        })
        .collect()
}

/// Bilinear resize with pixel centres at +0.5 (OpenCV `INTER_LINEAR`).
pub fn resize_linear(src: &FloatImage, width: usize, height: usize) -> FloatImage {
    resize_linear_from(src.width, src.height, |x, y| src.pixel(x, y), width, height)
}

/// [`resize_linear`] straight from 8-bit pixels: the same values as
/// `resize_linear(&FloatImage::from_rgb(src), ..)` without a float copy of the whole source
/// (12 bytes a pixel: 144 MB for a 12-megapixel photo).
pub fn resize_linear_rgb(src: &RgbImage, width: usize, height: usize) -> FloatImage {
    let pixel = |x: usize, y: usize| {
        let p = src.get_pixel(x as u32, y as u32).0;
        [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])]
    };
    resize_linear_from(src.width() as usize, src.height() as usize, pixel, width, height)
}

fn resize_linear_from(
    src_width: usize,
    src_height: usize,
    pixel: impl Fn(usize, usize) -> [f32; 3],
    width: usize,
    height: usize,
) -> FloatImage {
    let mut out = FloatImage::zeros(width, height);
    if src_width == 0 || src_height == 0 {
        return out;
    }
    let sx = src_width as f32 / width.max(1) as f32;
    let sy = src_height as f32 / height.max(1) as f32;
    let columns: Vec<(usize, usize, f32)> = (0..width).map(|x| linear_tap(x, sx, src_width)).collect();
    for y in 0..height {
        let (y0, y1, fy) = linear_tap(y, sy, src_height);
        for (x, &(x0, x1, fx)) in columns.iter().enumerate() {
            let (a, b, c, d) = (pixel(x0, y0), pixel(x1, y0), pixel(x0, y1), pixel(x1, y1));
            let mut value = [0.0f32; 3];
            for ch in 0..3 {
                let top = a[ch] + (b[ch] - a[ch]) * fx;
                let bottom = c[ch] + (d[ch] - c[ch]) * fx;
                value[ch] = top + (bottom - top) * fy;
            }
            out.set_pixel(x, y, value);
        }
    }
    out
}

fn linear_tap(d: usize, scale: f32, len: usize) -> (usize, usize, f32) {
    let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
    let i0 = (s.floor() as usize).min(len - 1);
    let i1 = (i0 + 1).min(len - 1);
    (i0, i1, s - i0 as f32)
}

/// Warps with a 2×3 affine matrix mapping source to destination coordinates (as OpenCV's
/// `warpAffine` without `WARP_INVERSE_MAP`), sampling bilinearly.
pub fn warp_affine(
    src: &FloatImage,
    matrix: &[[f64; 3]; 2],
    width: usize,
    height: usize,
    border: Border,
) -> FloatImage {
    let [[a, b, c], [d, e, f]] = *matrix;
    let det = a * e - b * d;
    let mut out = FloatImage::zeros(width, height);
    if det.abs() < 1e-12 {
        return out;
    }
    // Inverse of [[a b], [d e]] and the matching translation.
    let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
    let (ic, if_) = (-(ia * c + ib * f), -(id * c + ie * f));
    for y in 0..height {
        for x in 0..width {
            let (xf, yf) = (x as f64, y as f64);
            let sx = ia * xf + ib * yf + ic;
            let sy = id * xf + ie * yf + if_;
            out.set_pixel(x, y, sample_bilinear(src, sx, sy, border));
        }
    }
    out
}

/// Warps with a 3×3 homography mapping destination to source coordinates, sampling bilinearly.
pub fn warp_perspective(
    src: &FloatImage,
    dst_to_src: &[[f64; 3]; 3],
    width: usize,
    height: usize,
    border: Border,
) -> FloatImage {
    let m = dst_to_src;
    let mut out = FloatImage::zeros(width, height);
    for y in 0..height {
        for x in 0..width {
            let (xf, yf) = (x as f64, y as f64);
            let w = m[2][0] * xf + m[2][1] * yf + m[2][2];
            let w = if w.abs() < 1e-12 { 1e-12 } else { w };
            let sx = (m[0][0] * xf + m[0][1] * yf + m[0][2]) / w;
            let sy = (m[1][0] * xf + m[1][1] * yf + m[1][2]) / w;
            out.set_pixel(x, y, sample_bilinear(src, sx, sy, border));
        }
    }
    out
}

fn sample_bilinear(src: &FloatImage, x: f64, y: f64, border: Border) -> [f32; 3] {
    if !x.is_finite() || !y.is_finite() || src.width == 0 || src.height == 0 {
        return [0.0; 3];
    }
    let x0 = x.floor();
    let y0 = y.floor();
    let fx = (x - x0) as f32;
    let fy = (y - y0) as f32;
    let fetch = |xi: f64, yi: f64| -> [f32; 3] {
        let inside = xi >= 0.0 && yi >= 0.0 && xi < src.width as f64 && yi < src.height as f64;
        match (inside, border) {
            (true, _) => src.pixel(xi as usize, yi as usize),
            (false, Border::Black) => [0.0; 3],
            (false, Border::Replicate) => src
                .pixel(xi.clamp(0.0, (src.width - 1) as f64) as usize, yi.clamp(0.0, (src.height - 1) as f64) as usize),
        }
    };
    let (a, b, c, d) = (fetch(x0, y0), fetch(x0 + 1.0, y0), fetch(x0, y0 + 1.0), fetch(x0 + 1.0, y0 + 1.0));
    let mut value = [0.0f32; 3];
    for ch in 0..3 {
        let top = a[ch] + (b[ch] - a[ch]) * fx;
        let bottom = c[ch] + (d[ch] - c[ch]) * fx;
        value[ch] = top + (bottom - top) * fy;
    }
    value
}

#[cfg(test)]
mod tests {

    #[test]
    fn resizing_from_8_bit_pixels_equals_resizing_their_float_copy() {
        let image = RgbImage::from_fn(97, 61, |x, y| {
            image::Rgb([(x * 7 % 256) as u8, (y * 13 % 256) as u8, ((x + y) % 256) as u8])
        });
        for (w, h) in [(40, 25), (200, 130), (97, 30)] {
            assert_eq!(resize_linear_rgb(&image, w, h), resize_linear(&FloatImage::from_rgb(&image), w, h));
            assert_eq!(resize_area_rgb(&image, w, h), resize_area(&FloatImage::from_rgb(&image), w, h));
        }
    }

    use super::*;

    fn ramp(width: usize, height: usize) -> FloatImage {
        let data = (0..height).flat_map(|y| (0..width).flat_map(move |x| [x as f32, y as f32, 1.0])).collect();
        FloatImage { width, height, data }
    }

    #[test]
    fn area_resize_by_two_averages_blocks() {
        let out = resize_area(&ramp(4, 4), 2, 2);
        assert_eq!(out.pixel(0, 0), [0.5, 0.5, 1.0]);
        assert_eq!(out.pixel(1, 1), [2.5, 2.5, 1.0]);
    }

    #[test]
    fn area_resize_by_a_fraction_keeps_the_mean() {
        let src = ramp(10, 7);
        let out = resize_area(&src, 3, 2);
        let mean = |img: &FloatImage| img.data.iter().step_by(3).sum::<f32>() / (img.width * img.height) as f32;
        assert!((mean(&src) - mean(&out)).abs() < 1e-4);
    }

    #[test]
    fn linear_resize_matches_opencv_half_pixel_centres() {
        // OpenCV: resizing [0, 1, 2, 3] to 2 columns samples at 0.5 and 2.5.
        let out = resize_linear(&ramp(4, 1), 2, 1);
        assert_eq!(out.pixel(0, 0)[0], 0.5);
        assert_eq!(out.pixel(1, 0)[0], 2.5);
    }

    #[test]
    fn identity_warps_copy_the_image() {
        let src = ramp(5, 4);
        let same = warp_affine(&src, &[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], 5, 4, Border::Black);
        assert_eq!(same, src);
        let identity = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        assert_eq!(warp_perspective(&src, &identity, 5, 4, Border::Replicate), src);
    }

    #[test]
    fn affine_translation_shifts_and_fills_black() {
        let out = warp_affine(&ramp(5, 4), &[[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]], 5, 4, Border::Black);
        assert_eq!(out.pixel(2, 1), [0.0, 1.0, 1.0]);
        assert_eq!(out.pixel(0, 0), [0.0; 3]);
    }
}
