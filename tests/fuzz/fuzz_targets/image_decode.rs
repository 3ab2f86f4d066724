//! Any bytes as an image: decoded within the limits or refused with a reason; never a panic, and
//! (with libFuzzer's -malloc_limit_mb) never a huge allocation — the header is checked first.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidal::vision::{decode_image, ImageLimits};

fuzz_target!(|data: &[u8]| {
    let limits = ImageLimits { max_side: 4096, max_pixels: 4096 * 4096 };
    if let Ok(image) = decode_image(data, &limits) {
        let (w, h) = image.dimensions();
        assert!(w > 0 && h > 0 && w <= limits.max_side && h <= limits.max_side);
    }
});
