//! Request decoding: a record value (untrusted bytes) → a [`Request`] or a [`BadInput`].
//!
//! Envelope, common to every model: a JSON object with an optional `id` (string; absent → the
//! caller's default, `<topic>/<partition>/<offset>`) and an optional `deadline_ms` (Unix ms).
//! The model kind decides the payload fields (`text` for text models). Unknown fields are ignored
//! so that clients can add their own.

use serde_json::{Map, Value};

use super::{BadInput, BadInputKind};
use crate::config::Limits;

/// What a model kind reads from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A `text` field.
    Text,
}

/// The decoded payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
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
    let text = std::str::from_utf8(bytes).map_err(|e| {
        BadInput::new(BadInputKind::InvalidUtf8, format!("value is not UTF-8 (byte {})", e.valid_up_to()))
    })?;
    let json: Value = serde_json::from_str(text)
        .map_err(|e| BadInput::new(BadInputKind::InvalidJson, format!("value is not JSON: {e}")))?;
    let Value::Object(fields) = json else {
        return Err(BadInput::new(
            BadInputKind::NotAnObject,
            format!("value is a JSON {}, expected an object like {{\"text\": \"...\"}}", json_type(&json)),
        ));
    };
    let id = match optional_field(&fields, "id")? {
        None => default_id(),
        Some(Value::String(id)) => id.clone(),
        Some(other) => return Err(wrong_type("id", "a string", other)),
    };
    let deadline_ms = match optional_field(&fields, "deadline_ms")? {
        None => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(ms) => Some(ms),
            None => return Err(wrong_type("deadline_ms", "an integer (Unix milliseconds)", &Value::Number(n.clone()))),
        },
        Some(other) => return Err(wrong_type("deadline_ms", "an integer (Unix milliseconds)", other)),
    };
    let input = match kind {
        InputKind::Text => Input::Text(text_field(&fields, limits)?),
    };
    Ok(Request { id, deadline_ms, input })
}

fn text_field(fields: &Map<String, Value>, limits: &Limits) -> Result<String, BadInput> {
    let text = match optional_field(fields, "text")? {
        None => return Err(BadInput::new(BadInputKind::MissingField, "field 'text' is required")),
        Some(Value::String(text)) => text,
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
    Ok(text.clone())
}

/// A present, non-null field.
fn optional_field<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<Option<&'a Value>, BadInput> {
    Ok(fields.get(name).filter(|v| !v.is_null()))
}

fn wrong_type(field: &str, expected: &str, got: &Value) -> BadInput {
    BadInput::new(BadInputKind::WrongType, format!("field '{field}' must be {expected}, got a {}", json_type(got)))
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> Limits {
        Limits { max_payload_bytes: 1000, max_text_bytes: 100 }
    }

    fn decode(value: &[u8]) -> Result<Request, BadInput> {
        decode_request(InputKind::Text, Some(value), || "t/0/7".into(), &limits())
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
    fn absent_id_takes_the_record_coordinates() {
        assert_eq!(decode(br#"{"text": "x"}"#).unwrap().id, "t/0/7");
        assert_eq!(decode(br#"{"id": null, "text": "x"}"#).unwrap().id, "t/0/7");
    }

    #[test]
    fn each_bad_input_has_its_kind() {
        assert_eq!(
            decode_request(InputKind::Text, None, String::new, &limits()).unwrap_err().kind,
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
