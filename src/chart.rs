//! The few drawing primitives behind tidal's PNG charts (`tidal bench`'s bench.png and
//! `tidal scale simulate`'s simulation.png): a font found on the machine, axes, labels, saving.
//! Charts are drawn with `imageproc` on an RGB canvas; without a font they have no text.

use std::path::Path;

use ab_glyph::FontVec;
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_line_segment_mut, draw_text_mut};

use crate::error::{Error, Result};

pub const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
pub const GREY: Rgb<u8> = Rgb([160, 160, 160]);

/// A TrueType font for labels: `explicit`, else DejaVu Sans (or Arial) from the usual paths.
pub fn load_font(explicit: Option<&Path>) -> Option<FontVec> {
    let candidates = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/Library/Fonts/Arial.ttf",
    ];
    let paths = explicit.into_iter().map(Path::to_path_buf).chain(candidates.iter().map(std::path::PathBuf::from));
    paths.filter_map(|p| std::fs::read(p).ok()).find_map(|bytes| FontVec::try_from_vec(bytes).ok())
}

/// A white canvas.
pub fn canvas(width: u32, height: u32) -> RgbImage {
    RgbImage::from_pixel(width, height, Rgb([255, 255, 255]))
}

/// The left and bottom axes of a plot area.
pub fn axes(img: &mut RgbImage, left: f32, top: f32, right: f32, bottom: f32) {
    draw_line_segment_mut(img, (left, top), (left, bottom), GREY);
    draw_line_segment_mut(img, (left, bottom), (right, bottom), GREY);
}

/// A label at (x, y), if there is a font.
pub fn text(img: &mut RgbImage, font: Option<&FontVec>, x: i32, y: i32, size: f32, colour: Rgb<u8>, s: &str) {
    if let Some(font) = font {
        draw_text_mut(img, colour, x, y, size, font, s);
    }
}

/// Writes the canvas as a PNG.
pub fn save(img: &RgbImage, path: &Path) -> Result<()> {
    img.save(path).map_err(|e| Error::Io { path: path.into(), source: std::io::Error::other(e.to_string()) })
}
