//! Request decoding: a record value (untrusted bytes) → a [`Request`] or a [`BadInput`].
//!
//! Envelope, common to every model: a JSON object with an optional `id` (string; absent → the
//! caller's default, `<topic>/<partition>/<offset>`) and an optional `deadline_ms` (Unix ms).
//! The model kind decides the payload fields (`text` for text models, `image` or `image_a` and
//! `image_b` as base64 for image models). Unknown fields are ignored so that clients can add their
//! own. Image models also take a raw JPEG/PNG as the whole record value when the record has a
//! `content-type: image/...` header (the id then comes from an `id` header), so that large
//! images need not be base64-encoded.

use base64::Engine;
use image::RgbImage;

use super::envelope::{self, Envelope, Field, Parsed};
use super::{BadInput, BadInputKind};
use crate::config::Limits;
use crate::vision::{decode_image, ImageLimits, ImageProblem, ImageRejected};

/// Header naming a raw record value's media type (`image/jpeg`, `image/png`).
pub const HEADER_CONTENT_TYPE: &str = "content-type";
/// Header carrying the request id of a raw image record.
pub const HEADER_ID: &str = "id";
/// The tenant a gateway authenticated the request for (absent when it came some other way).
pub const HEADER_TENANT: &str = "tidal-tenant";

/// The `content-type` of a raw image record, from the bytes' signature (`None`: not an image).
pub fn image_content_type(bytes: &[u8]) -> Option<&'static str> {
    image::guess_format(bytes).ok().map(|format| format.to_mime_type())
}

/// The record headers request decoding looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHeaders<'a> {
    pub content_type: Option<&'a str>,
    pub id: Option<&'a str>,
}

/// What a model kind reads from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A `text` field.
    Text,
    /// An `image` field (base64 JPEG/PNG), or a raw image value.
    Image,
    /// Two images, `image_a` and `image_b` (base64 JPEG/PNG).
    ImagePair,
}

/// The decoded payload: images are decoded to pixels here, so that a bad image is refused before
/// it reaches a model.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    Image(RgbImage),
    ImagePair(RgbImage, RgbImage),
}

impl Input {
    /// Bytes the decoded input holds (pixels, for images): what a worker's batch budget counts.
    pub fn decoded_bytes(&self) -> usize {
        match self {
            Input::Text(text) => text.len(),
            Input::Image(image) => image.as_raw().len(),
            Input::ImagePair(a, b) => a.as_raw().len() + b.as_raw().len(),
        }
    }
}

/// A decoded, validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: String,
    pub deadline_ms: Option<i64>,
    pub input: Input,
}

/// Decodes one record value. Cheap checks (size) come before parsing.
pub fn decode_request(
    kind: InputKind,
    value: Option<&[u8]>,
    headers: RequestHeaders<'_>,
    default_id: impl FnOnce() -> String,
    limits: &Limits,
) -> Result<Request, BadInput> {
    let bytes = match value {
        Some(bytes) if !bytes.is_empty() => bytes,
        _ => return Err(BadInput::new(BadInputKind::EmptyPayload, "record has no value")),
    };
    if bytes.len() > limits.max_payload_bytes {
        return Err(BadInput::new(
            BadInputKind::PayloadTooLarge,
            format!("value is {} bytes, limit is {} (limits.max_payload_bytes)", bytes.len(), limits.max_payload_bytes),
        ));
    }
    if let Some(content_type) = headers.content_type.filter(|t| t.trim().to_ascii_lowercase().starts_with("image/")) {
        if kind != InputKind::Image {
            return Err(BadInput::new(
                BadInputKind::UnsupportedImage,
                format!("a raw {content_type} value is accepted only by single-image models; send JSON"),
            ));
        }
        let id = checked_id(headers.id.map_or_else(default_id, str::to_string), limits)?;
        let image = decode_image(bytes, &image_limits(limits)).map_err(|rejected| bad_image(rejected, None))?;
        return Ok(Request { id, deadline_ms: None, input: Input::Image(image) });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        BadInput::new(BadInputKind::InvalidUtf8, format!("value is not UTF-8 (byte {})", e.valid_up_to()))
    })?;
    let parsed = envelope::parse(text)
        .map_err(|e| BadInput::new(BadInputKind::InvalidJson, format!("value is not JSON: {e}")))?;
    let fields = match parsed {
        Parsed::Object(fields) => fields,
        Parsed::NotAnObject(json_type) => {
            return Err(BadInput::new(
                BadInputKind::NotAnObject,
                format!("value is a JSON {json_type}, expected an object like {{\"text\": \"...\"}}"),
            ))
        }
    };
    let id = match &fields.id {
        None => default_id(),
        Some(Field::Str(id)) => checked_id(id.to_string(), limits)?,
        Some(other) => return Err(wrong_type("id", "a string", other)),
    };
    let deadline_ms = match &fields.deadline_ms {
        None => None,
        Some(Field::Int(ms)) => Some(*ms),
        Some(other) => return Err(wrong_type("deadline_ms", "an integer (Unix milliseconds)", other)),
    };
    let input = match kind {
        InputKind::Text => Input::Text(text_field(&fields, limits)?),
        InputKind::Image => Input::Image(image_field(&fields, "image", limits)?),
        InputKind::ImagePair => {
            Input::ImagePair(image_field(&fields, "image_a", limits)?, image_field(&fields, "image_b", limits)?)
        }
    };
    Ok(Request { id, deadline_ms, input })
}

/// The id is echoed in the result: an unbounded one could make the result too large to deliver.
fn checked_id(id: String, limits: &Limits) -> Result<String, BadInput> {
    if id.len() > limits.max_id_bytes {
        return Err(BadInput::new(
            BadInputKind::IdTooLong,
            format!("'id' is {} bytes, limit is {} (limits.max_id_bytes)", id.len(), limits.max_id_bytes),
        ));
    }
    Ok(id)
}

fn text_field(fields: &Envelope<'_>, limits: &Limits) -> Result<String, BadInput> {
    let text = match &fields.text {
        None => return Err(BadInput::new(BadInputKind::MissingField, "field 'text' is required")),
        Some(Field::Str(text)) => text,
        Some(other) => return Err(wrong_type("text", "a string", other)),
    };
    if text.trim().is_empty() {
        return Err(BadInput::new(BadInputKind::EmptyText, "field 'text' is empty"));
    }
    if text.len() > limits.max_text_bytes {
        return Err(BadInput::new(
            BadInputKind::TextTooLong,
            format!("'text' is {} bytes, limit is {} (limits.max_text_bytes)", text.len(), limits.max_text_bytes),
        ));
    }
    Ok(text.to_string())
}

/// A base64 image field, decoded to pixels.
fn image_field(fields: &Envelope<'_>, name: &str, limits: &Limits) -> Result<RgbImage, BadInput> {
    let encoded = match fields.get(name) {
        None => return Err(BadInput::new(BadInputKind::MissingField, format!("field '{name}' is required"))),
        Some(Field::Str(text)) => text,
        Some(other) => return Err(wrong_type(name, "a base64 string", other)),
    };
    // Tolerate a data URL prefix and line breaks, as clients often send them.
    let encoded = encoded.split_once(";base64,").map_or(encoded.as_ref(), |(_, data)| data);
    let cleaned: String = encoded.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(cleaned.as_bytes()))
        .map_err(|e| BadInput::new(BadInputKind::InvalidBase64, format!("field '{name}' is not valid base64: {e}")))?;
    decode_image(&bytes, &image_limits(limits)).map_err(|rejected| bad_image(rejected, Some(name)))
}

/// The decoder's bounds, from the configured limits.
fn image_limits(limits: &Limits) -> ImageLimits {
    ImageLimits { max_side: limits.max_image_side, max_pixels: limits.max_image_pixels }
}

/// A refused image as bad input; `field` names the JSON field it came from.
fn bad_image(rejected: ImageRejected, field: Option<&str>) -> BadInput {
    let kind = match rejected.problem {
        ImageProblem::Unsupported => BadInputKind::UnsupportedImage,
        ImageProblem::Corrupt => BadInputKind::CorruptImage,
        ImageProblem::TooLarge => BadInputKind::ImageTooLarge,
    };
    match field {
        Some(name) => BadInput::new(kind, format!("'{name}': {}", rejected.reason)),
        None => BadInput::new(kind, rejected.reason),
    }
}

fn wrong_type(field: &str, expected: &str, got: &Field<'_>) -> BadInput {
    BadInput::new(BadInputKind::WrongType, format!("field '{field}' must be {expected}, got a {}", got.json_type()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> Limits {
        Limits { max_payload_bytes: 1000, max_text_bytes: 100, ..Limits::default() }
    }

    fn decode(value: &[u8]) -> Result<Request, BadInput> {
        decode_request(InputKind::Text, Some(value), RequestHeaders::default(), || "t/0/7".into(), &limits())
    }

    fn png_base64(width: u32, height: u32) -> String {
        let image = RgbImage::from_pixel(width, height, image::Rgb([9, 8, 7]));
        let mut out = std::io::Cursor::new(Vec::new());
        image.write_to(&mut out, image::ImageFormat::Png).unwrap();
        base64::engine::general_purpose::STANDARD.encode(out.into_inner())
    }

    fn decode_kind(kind: InputKind, value: &str) -> Result<Request, BadInput> {
        let limits = Limits { max_image_side: 64, ..Limits::default() };
        decode_request(kind, Some(value.as_bytes()), RequestHeaders::default(), || "d".into(), &limits)
    }

    fn kind_of(value: &[u8]) -> BadInputKind {
        decode(value).unwrap_err().kind
    }

    #[test]
    fn decodes_a_full_request() {
        let req = decode(br#"{"id": "r1", "text": "I loved it", "deadline_ms": 1700000000000, "extra": 1}"#).unwrap();
        assert_eq!(req.id, "r1");
        assert_eq!(req.deadline_ms, Some(1_700_000_000_000));
        assert_eq!(req.input, Input::Text("I loved it".into()));
    }

    #[test]
    fn an_id_longer_than_the_limit_is_bad_input() {
        let limits = Limits { max_id_bytes: 8, ..limits() };
        let decode =
            |value: &[u8], headers| decode_request(InputKind::Text, Some(value), headers, || "d".into(), &limits);
        assert_eq!(decode(br#"{"id": "12345678", "text": "x"}"#, RequestHeaders::default()).unwrap().id, "12345678");
        let bad = decode(br#"{"id": "123456789", "text": "x"}"#, RequestHeaders::default()).unwrap_err();
        assert_eq!(bad.kind, BadInputKind::IdTooLong);
        assert!(bad.reason.contains("limits.max_id_bytes"), "{}", bad.reason);
        let raw = RequestHeaders { content_type: Some("image/png"), id: Some("123456789") };
        let image = decode_request(InputKind::Image, Some(b"\x89PNG"), raw, || "d".into(), &limits).unwrap_err();
        assert_eq!(image.kind, BadInputKind::IdTooLong);
    }

    #[test]
    fn absent_id_takes_the_record_coordinates() {
        assert_eq!(decode(br#"{"text": "x"}"#).unwrap().id, "t/0/7");
        assert_eq!(decode(br#"{"id": null, "text": "x"}"#).unwrap().id, "t/0/7");
    }

    #[test]
    fn each_bad_input_has_its_kind() {
        assert_eq!(
            decode_request(InputKind::Text, None, RequestHeaders::default(), String::new, &limits()).unwrap_err().kind,
            BadInputKind::EmptyPayload
        );
        assert_eq!(kind_of(b""), BadInputKind::EmptyPayload);
        assert_eq!(kind_of(&[b'"'; 1001]), BadInputKind::PayloadTooLarge);
        assert_eq!(kind_of(b"{\"text\": \"\xff\xfe\"}"), BadInputKind::InvalidUtf8);
        assert_eq!(kind_of(b"{\"text\": "), BadInputKind::InvalidJson);
        assert_eq!(kind_of(b"[1, 2]"), BadInputKind::NotAnObject);
        assert_eq!(kind_of(br#"{"id": "a"}"#), BadInputKind::MissingField);
        assert_eq!(kind_of(br#"{"text": 42}"#), BadInputKind::WrongType);
        assert_eq!(kind_of(br#"{"text": "x", "id": 5}"#), BadInputKind::WrongType);
        assert_eq!(kind_of(br#"{"text": "x", "deadline_ms": "soon"}"#), BadInputKind::WrongType);
        assert_eq!(kind_of(br#"{"text": "x", "deadline_ms": 1.5}"#), BadInputKind::WrongType);
        assert_eq!(kind_of(br#"{"text": "   "}"#), BadInputKind::EmptyText);
        let long = format!(r#"{{"text": "{}"}}"#, "a".repeat(101));
        assert_eq!(kind_of(long.as_bytes()), BadInputKind::TextTooLong);
    }

    #[test]
    fn reasons_name_the_field_and_the_limit() {
        assert!(decode(br#"{"text": 42}"#).unwrap_err().reason.contains("'text' must be a string, got a number"));
        let long = format!(r#"{{"text": "{}"}}"#, "a".repeat(101));
        assert!(decode(long.as_bytes()).unwrap_err().reason.contains("limits.max_text_bytes"));
    }

    #[test]
    fn decodes_image_fields() {
        let one = decode_kind(InputKind::Image, &format!(r#"{{"id": "i", "image": "{}"}}"#, png_base64(3, 2))).unwrap();
        assert!(matches!(one.input, Input::Image(ref img) if img.dimensions() == (3, 2)));
        let url = format!(r#"{{"image": "data:image/png;base64,{}"}}"#, png_base64(4, 4));
        assert!(decode_kind(InputKind::Image, &url).is_ok());
        let pair = format!(r#"{{"image_a": "{}", "image_b": "{}"}}"#, png_base64(2, 2), png_base64(5, 1));
        let Input::ImagePair(a, b) = decode_kind(InputKind::ImagePair, &pair).unwrap().input else { panic!() };
        assert_eq!((a.dimensions(), b.dimensions()), ((2, 2), (5, 1)));
    }

    #[test]
    fn bad_images_have_their_kind_and_name_the_field() {
        let kind = |k, v: &str| decode_kind(k, v).unwrap_err();
        assert_eq!(kind(InputKind::Image, r#"{"image": "%%%"}"#).kind, BadInputKind::InvalidBase64);
        assert_eq!(kind(InputKind::Image, r#"{"image": 7}"#).kind, BadInputKind::WrongType);
        assert_eq!(kind(InputKind::Image, r#"{"id": "x"}"#).kind, BadInputKind::MissingField);
        let gif = base64::engine::general_purpose::STANDARD.encode(b"GIF89a....");
        assert_eq!(kind(InputKind::Image, &format!(r#"{{"image": "{gif}"}}"#)).kind, BadInputKind::UnsupportedImage);
        let big = format!(r#"{{"image_a": "{}", "image_b": "{}"}}"#, png_base64(2, 2), png_base64(65, 2));
        let err = kind(InputKind::ImagePair, &big);
        assert_eq!(err.kind, BadInputKind::ImageTooLarge);
        assert!(err.reason.starts_with("'image_b'"), "{err}");
        let missing = format!(r#"{{"image_a": "{}"}}"#, png_base64(2, 2));
        assert!(kind(InputKind::ImagePair, &missing).reason.contains("'image_b'"));
    }

    #[test]
    fn raw_image_values_need_a_content_type_and_an_image_model() {
        let bytes = base64::engine::general_purpose::STANDARD.decode(png_base64(6, 3)).unwrap();
        let headers = RequestHeaders { content_type: Some("image/png"), id: Some("raw-1") };
        let req = decode_request(InputKind::Image, Some(&bytes), headers, || "d".into(), &Limits::default()).unwrap();
        assert_eq!(req.id, "raw-1");
        assert!(matches!(req.input, Input::Image(ref img) if img.dimensions() == (6, 3)));
        let no_id = RequestHeaders { content_type: Some("image/png"), id: None };
        let req = decode_request(InputKind::Image, Some(&bytes), no_id, || "t/0/1".into(), &Limits::default()).unwrap();
        assert_eq!(req.id, "t/0/1");
        let err =
            decode_request(InputKind::Text, Some(&bytes), headers, || "d".into(), &Limits::default()).unwrap_err();
        assert_eq!(err.kind, BadInputKind::UnsupportedImage);
        let truncated =
            decode_request(InputKind::Image, Some(&bytes[..30]), headers, || "d".into(), &Limits::default());
        assert_eq!(truncated.unwrap_err().kind, BadInputKind::CorruptImage);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn any_valid_text_round_trips(text in "[^\\x00]{1,90}", id in "[a-z0-9-]{1,20}") {
            prop_assume!(!text.trim().is_empty() && text.len() <= 100);
            let value = serde_json::json!({"id": id, "text": text}).to_string();
            let req = decode(value.as_bytes()).unwrap();
            prop_assert_eq!(req.id, id);
            prop_assert_eq!(req.input, Input::Text(text));
        }
    }
}
