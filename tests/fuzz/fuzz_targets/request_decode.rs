//! Any record value, with or without a `content-type: image/...` header, for each model kind:
//! decoding answers a request or a bad-input reason, never panics, and a decoded image is within
//! the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidal::codec::{decode_request, Input, InputKind, RequestHeaders};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, value)) = data.split_first() else { return };
    let kind = match selector % 3 {
        0 => InputKind::Text,
        1 => InputKind::Image,
        _ => InputKind::ImagePair,
    };
    let content_type = (selector & 0x80 != 0).then_some("image/png");
    let headers = RequestHeaders { content_type, id: Some("fuzz") };
    let limits = tidal::config::ServeConfig::default().limits;
    if let Ok(request) = decode_request(kind, Some(value), headers, || "default".into(), &limits) {
        let check = |image: &image::RgbImage| {
            let (w, h) = image.dimensions();
            assert!(w <= limits.max_image_side && h <= limits.max_image_side);
            assert!(u64::from(w) * u64::from(h) <= limits.max_image_pixels);
        };
        match &request.input {
            Input::Text(text) => assert!(text.len() <= limits.max_text_bytes),
            Input::Image(image) => check(image),
            Input::ImagePair(a, b) => {
                check(a);
                check(b);
            }
        }
    }
});
