//! Any string as the base64 `image` field of a JSON OCR request (and both fields of a face-match
//! request): wrong alphabets, padding, whitespace, truncation — a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidal::codec::{decode_request, InputKind, RequestHeaders};

fuzz_target!(|data: &[u8]| {
    let field = String::from_utf8_lossy(data);
    let limits = tidal::config::ServeConfig::default().limits;
    let single = serde_json::json!({"id": "f", "image": field}).to_string();
    let _ =
        decode_request(InputKind::Image, Some(single.as_bytes()), RequestHeaders::default(), || "d".into(), &limits);
    let pair = serde_json::json!({"id": "f", "image_a": field, "image_b": field}).to_string();
    let _ =
        decode_request(InputKind::ImagePair, Some(pair.as_bytes()), RequestHeaders::default(), || "d".into(), &limits);
});
