//! Untrusted image bytes → RGB pixels, or an [`ImageRejected`] saying why not (the codec turns
//! it into a dead letter's reason).
//!
//! The format is taken from the bytes' signature (never from a client's claim); only JPEG and
//! PNG are accepted. The header is read first so that an image whose dimensions exceed the
//! limits (a decompression bomb) is refused before any pixel buffer is allocated; the decoder
//! then runs with an allocation cap as a second guard.
use std::io::Cursor;

use image::{ImageError, ImageFormat, ImageReader, RgbImage};

/// Why an image was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageProblem {
    /// Not JPEG or PNG.
    Unsupported,
    /// JPEG or PNG by its signature, but not decodable.
    Corrupt,
    /// Beyond the limits, or too costly to decode.
    TooLarge,
}

/// An image refused by [`decode_image`], with a reason a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ImageRejected {
    pub problem: ImageProblem,
    pub reason: String,
}

impl ImageRejected {
    fn new(problem: ImageProblem, reason: impl Into<String>) -> Self {
        ImageRejected { problem, reason: reason.into() }
    }
}

/// Bounds on what a request may ask the decoder to allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest width or height accepted.
    pub max_side: u32,
    /// Largest width × height accepted.
    pub max_pixels: u64,
}

/// Decodes a JPEG or PNG into 8-bit RGB (alpha dropped, grey expanded).
pub fn decode_image(bytes: &[u8], limits: &ImageLimits) -> Result<RgbImage, ImageRejected> {
    let format = match image::guess_format(bytes) {
        Ok(format @ (ImageFormat::Jpeg | ImageFormat::Png)) => format,
        Ok(other) => {
            return Err(ImageRejected::new(
                ImageProblem::Unsupported,
                format!(
                    "{} images are not supported; send JPEG or PNG",
                    other.extensions_str().first().unwrap_or(&"?")
                ),
            ))
        }
        Err(_) => {
            return Err(ImageRejected::new(
                ImageProblem::Unsupported,
                "not a JPEG or PNG image (unrecognised file signature)",
            ))
        }
    };
    let (width, height) =
        ImageReader::with_format(Cursor::new(bytes), format).into_dimensions().map_err(|e| corrupt(&e))?;
    if width == 0 || height == 0 {
        return Err(ImageRejected::new(ImageProblem::Corrupt, format!("image is {width}x{height} pixels")));
    }
    let pixels = u64::from(width) * u64::from(height);
    if width > limits.max_side || height > limits.max_side || pixels > limits.max_pixels {
        return Err(ImageRejected::new(
            ImageProblem::TooLarge,
            format!(
                "image is {width}x{height} pixels; limits are {} per side and {} in all \
                 (limits.max_image_side, limits.max_image_pixels)",
                limits.max_side, limits.max_pixels
            ),
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decode_limits = image::Limits::default();
    decode_limits.max_image_width = Some(limits.max_side);
    decode_limits.max_image_height = Some(limits.max_side);
    // 16-bit RGBA is the widest layout either decoder produces, plus room for the RGB copy.
    decode_limits.max_alloc = Some(pixels.saturating_mul(8 + 3).saturating_add(1 << 20));
    reader.limits(decode_limits);
    let image = reader.decode().map_err(|e| match e {
        ImageError::Limits(_) => {
            ImageRejected::new(ImageProblem::TooLarge, format!("decoding needs too much memory: {e}"))
        }
        other => corrupt(&other),
    })?;
    Ok(image.into_rgb8())
}

fn corrupt(error: &ImageError) -> ImageRejected {
    ImageRejected::new(ImageProblem::Corrupt, format!("image cannot be decoded: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: ImageLimits = ImageLimits { max_side: 4096, max_pixels: 4_000_000 };

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 200]));
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    fn kind(bytes: &[u8]) -> ImageProblem {
        decode_image(bytes, &LIMITS).unwrap_err().problem
    }

    #[test]
    fn decodes_png_and_jpeg() {
        let image = decode_image(&png(5, 3), &LIMITS).unwrap();
        assert_eq!(image.dimensions(), (5, 3));
        assert_eq!(image.get_pixel(4, 2).0, [4, 2, 7]);
        assert_eq!(decode_image(&jpeg(16, 8), &LIMITS).unwrap().dimensions(), (16, 8));
    }

    #[test]
    fn refuses_other_formats_and_garbage() {
        assert_eq!(kind(b"GIF89a\x01\x00\x01\x00"), ImageProblem::Unsupported);
        assert_eq!(kind(b"hello, not an image"), ImageProblem::Unsupported);
        assert_eq!(kind(b""), ImageProblem::Unsupported);
    }

    #[test]
    fn truncated_files_are_corrupt() {
        let full = png(64, 64);
        assert_eq!(kind(&full[..full.len() / 2]), ImageProblem::Corrupt);
        let full = jpeg(64, 64);
        assert!(decode_image(&full[..40], &LIMITS).is_err());
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_decoding() {
        // A valid PNG header claiming 100000 x 100000 pixels, with almost no data behind it.
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32fast::hash(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = decode_image(&bomb, &LIMITS).unwrap_err();
        assert_eq!(err.problem, ImageProblem::TooLarge, "{err}");
        assert!(err.reason.contains("limits.max_image_pixels"), "{err}");
        let wide = png(3000, 2);
        let narrow = ImageLimits { max_side: 2048, max_pixels: 4_000_000 };
        assert_eq!(decode_image(&wide, &narrow).unwrap_err().problem, ImageProblem::TooLarge);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = decode_image(&bytes, &LIMITS);
        }

        #[test]
        fn corrupted_images_never_panic(seed in any::<u64>(), flips in 1usize..20, cut in 0usize..100) {
            let mut bytes = if seed % 2 == 0 { png(32, 24) } else { jpeg(32, 24) };
            let mut state = seed;
            for _ in 0..flips {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let at = (state >> 33) as usize % bytes.len();
                bytes[at] ^= (state >> 17) as u8 | 1;
            }
            let keep = bytes.len() - (bytes.len() * cut / 100).min(bytes.len() - 1);
            if let Ok(image) = decode_image(&bytes[..keep], &LIMITS) {
                prop_assert!(u64::from(image.width()) * u64::from(image.height()) <= LIMITS.max_pixels);
            }
        }
    }
}
