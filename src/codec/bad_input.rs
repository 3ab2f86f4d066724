//! Why a request cannot be answered. The kind is a stable, machine-readable label (it appears in
//! the dead-letter headers and in metrics); the reason is for humans.

use std::fmt;

/// Stable labels for the ways a request can be unanswerable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BadInputKind {
    /// The record has no value (a tombstone) or an empty one.
    EmptyPayload,
    /// The value is larger than `limits.max_payload_bytes`.
    PayloadTooLarge,
    /// The value is not UTF-8.
    InvalidUtf8,
    /// The value is not JSON.
    InvalidJson,
    /// The JSON is not an object.
    NotAnObject,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// The text is empty or only whitespace.
    EmptyText,
    /// The text is longer than `limits.max_text_bytes`.
    TextTooLong,
    /// An image field is not valid base64.
    InvalidBase64,
    /// The bytes are not a JPEG or PNG image.
    UnsupportedImage,
    /// The image is truncated, corrupt or has no pixels.
    CorruptImage,
    /// The image exceeds `limits.max_image_side` or `limits.max_image_pixels`.
    ImageTooLarge,
    /// The request `id` is longer than `limits.max_id_bytes` (it is echoed in the result).
    IdTooLong,
    /// The model failed on this request alone (the rest of its batch was answered), or panicked.
    InferenceFailed,
    /// The encoded result is larger than the result topic or `limits.max_result_bytes` accepts.
    ResultTooLarge,
    /// The broker refused this request's result for a reason of its own (the record, not the
    /// cluster): the request is dead-lettered so that its partition moves on.
    DeliveryFailed,
}

impl BadInputKind {
    /// The label used in headers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            BadInputKind::EmptyPayload => "empty_payload",
            BadInputKind::PayloadTooLarge => "payload_too_large",
            BadInputKind::InvalidUtf8 => "invalid_utf8",
            BadInputKind::InvalidJson => "invalid_json",
            BadInputKind::NotAnObject => "not_an_object",
            BadInputKind::MissingField => "missing_field",
            BadInputKind::WrongType => "wrong_type",
            BadInputKind::EmptyText => "empty_text",
            BadInputKind::TextTooLong => "text_too_long",
            BadInputKind::InvalidBase64 => "invalid_base64",
            BadInputKind::UnsupportedImage => "unsupported_image",
            BadInputKind::CorruptImage => "corrupt_image",
            BadInputKind::ImageTooLarge => "image_too_large",
            BadInputKind::IdTooLong => "id_too_long",
            BadInputKind::InferenceFailed => "inference_failed",
            BadInputKind::ResultTooLarge => "result_too_large",
            BadInputKind::DeliveryFailed => "delivery_failed",
        }
    }
}

impl fmt::Display for BadInputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request that cannot be answered, with its kind and a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInput {
    pub kind: BadInputKind,
    pub reason: String,
}

impl BadInput {
    pub fn new(kind: BadInputKind, reason: impl Into<String>) -> Self {
        BadInput { kind, reason: reason.into() }
    }
}

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.reason)
    }
}
