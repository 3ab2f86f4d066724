//! The request envelope parsed straight from the record's bytes: only the fields the decoder
//! reads are kept, strings are borrowed from the record when they hold no escapes, and every
//! other value is skipped without being built. A `serde_json::Value` tree would allocate a map,
//! its keys and every value of every request (a third of a light model's time went to malloc and
//! free); this keeps a request's decoding to the copies its answer needs.
//!
//! The semantics are a JSON object's as `serde_json::Value` reads it: unknown keys are ignored,
//! a repeated key keeps its last value, and `null` counts as absent.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// One envelope field as the decoder needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    /// Any other JSON value, by its type's name (`"number"` for a non-integer or one beyond i64).
    Other(&'static str),
}

impl Field<'_> {
    /// The JSON type's name, for error messages.
    pub fn json_type(&self) -> &'static str {
        match self {
            Field::Str(_) => "string",
            Field::Int(_) => "number",
            Field::Other(name) => name,
        }
    }
}

/// The fields a request may carry (each `None` when absent or null).
#[derive(Debug, Default, PartialEq)]
pub struct Envelope<'a> {
    pub id: Option<Field<'a>>,
    pub deadline_ms: Option<Field<'a>>,
    pub text: Option<Field<'a>>,
    pub image: Option<Field<'a>>,
    pub image_a: Option<Field<'a>>,
    pub image_b: Option<Field<'a>>,
}

impl<'a> Envelope<'a> {
    /// A field by its JSON name (`None` for a name the envelope does not keep).
    pub fn get(&self, name: &str) -> Option<&Field<'a>> {
        match name {
            "id" => self.id.as_ref(),
            "deadline_ms" => self.deadline_ms.as_ref(),
            "text" => self.text.as_ref(),
            "image" => self.image.as_ref(),
            "image_a" => self.image_a.as_ref(),
            "image_b" => self.image_b.as_ref(),
            _ => None,
        }
    }
}

/// A record value: an object's envelope, or the JSON type it is instead.
#[derive(Debug, PartialEq)]
pub enum Parsed<'a> {
    Object(Envelope<'a>),
    NotAnObject(&'static str),
}

/// Parses a record value (JSON text).
pub fn parse(text: &str) -> serde_json::Result<Parsed<'_>> {
    serde_json::from_str(text)
}

/// The keys the envelope keeps; any other is skipped.
enum Key {
    Id,
    DeadlineMs,
    Text,
    Image,
    ImageA,
    ImageB,
    Unknown,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "id" => Key::Id,
                    "deadline_ms" => Key::DeadlineMs,
                    "text" => Key::Text,
                    "image" => Key::Image,
                    "image_a" => Key::ImageA,
                    "image_b" => Key::ImageB,
                    _ => Key::Unknown,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A field's value; `None` for null.
struct Nullable<'a>(Option<Field<'a>>);

impl<'de> Deserialize<'de> for Nullable<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Nullable<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Nullable(None))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Nullable(Some(Field::Other("boolean"))))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Nullable(Some(Field::Int(n))))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Nullable(Some(i64::try_from(n).map_or(Field::Other("number"), Field::Int))))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Nullable(Some(Field::Other("number"))))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Nullable(Some(Field::Str(Cow::Borrowed(s)))))
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Nullable(Some(Field::Str(Cow::Owned(s.to_owned())))))
    }
    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Nullable(Some(Field::Str(Cow::Owned(s)))))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Nullable(Some(Field::Other("array"))))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Nullable(Some(Field::Other("object"))))
    }
}

impl<'de> Deserialize<'de> for Parsed<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParsedVisitor;
        impl<'de> Visitor<'de> for ParsedVisitor {
            type Value = Parsed<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut envelope = Envelope::default();
                while let Some(key) = map.next_key::<Key>()? {
                    let slot = match key {
                        Key::Id => &mut envelope.id,
                        Key::DeadlineMs => &mut envelope.deadline_ms,
                        Key::Text => &mut envelope.text,
                        Key::Image => &mut envelope.image,
                        Key::ImageA => &mut envelope.image_a,
                        Key::ImageB => &mut envelope.image_b,
                        Key::Unknown => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = map.next_value::<Nullable<'de>>()?.0;
                }
                Ok(Parsed::Object(envelope))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Parsed::NotAnObject("null"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Parsed::NotAnObject("boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Parsed::NotAnObject("number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Parsed::NotAnObject("number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Parsed::NotAnObject("number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Parsed::NotAnObject("string"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Parsed::NotAnObject("array"))
            }
        }
        deserializer.deserialize_any(ParsedVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn envelope(text: &str) -> Envelope<'_> {
        match parse(text).unwrap() {
            Parsed::Object(envelope) => envelope,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn keeps_the_envelope_fields_and_skips_the_rest() {
        let e = envelope(r#"{"id":"r1","extra":{"a":[1,2,{"b":null}]},"text":"hi","deadline_ms":17,"n":[]}"#);
        assert_eq!(e.id, Some(Field::Str("r1".into())));
        assert_eq!(e.text, Some(Field::Str("hi".into())));
        assert_eq!(e.deadline_ms, Some(Field::Int(17)));
        assert_eq!((e.image, e.image_a, e.image_b), (None, None, None));
    }

    #[test]
    fn strings_without_escapes_are_borrowed_and_escapes_are_decoded() {
        let e = envelope(r#"{"text":"plain","id":"a\"b\u00e9"}"#);
        assert!(matches!(e.text, Some(Field::Str(Cow::Borrowed("plain")))));
        assert_eq!(e.id, Some(Field::Str("a\"bé".into())));
    }

    #[test]
    fn null_is_absent_and_a_repeated_key_keeps_its_last_value() {
        let e = envelope(r#"{"text":"first","id":"x","text":"last","id":null}"#);
        assert_eq!((e.text, e.id), (Some(Field::Str("last".into())), None));
    }

    #[test]
    fn other_values_are_named_by_type() {
        let e = envelope(r#"{"id":1.5,"text":true,"image":[1],"image_a":{},"deadline_ms":18446744073709551615}"#);
        let types: Vec<&str> = [&e.id, &e.text, &e.image, &e.image_a, &e.deadline_ms]
            .into_iter()
            .map(|f| f.as_ref().map_or("absent", Field::json_type))
            .collect();
        assert_eq!(types, ["number", "boolean", "array", "object", "number"]);
        assert_eq!(e.deadline_ms, Some(Field::Other("number")), "beyond i64 is not an integer here");
    }

    #[test]
    fn a_value_that_is_not_an_object_is_named() {
        for (text, name) in
            [("null", "null"), ("[1,[2]]", "array"), ("\"s\"", "string"), ("-3", "number"), ("false", "boolean")]
        {
            assert_eq!(parse(text).unwrap(), Parsed::NotAnObject(name), "{text}");
        }
    }

    #[test]
    fn malformed_json_is_an_error() {
        for text in ["", "{", r#"{"text":}"#, r#"{"text":"a"} x"#, "[1,"] {
            assert!(parse(text).is_err(), "{text:?}");
        }
    }

    proptest! {
        /// Whatever the object holds, the envelope agrees with `serde_json::Value`'s reading.
        #[test]
        fn agrees_with_serde_json_value(
            fields in proptest::collection::vec(
                (prop::sample::select(vec!["id", "text", "deadline_ms", "image", "other"]),
                 prop_oneof![
                     any::<String>().prop_map(Value::from),
                     any::<i64>().prop_map(Value::from),
                     any::<u64>().prop_map(Value::from),
                     any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
                     Just(Value::Null),
                     any::<bool>().prop_map(Value::from),
                     Just(serde_json::json!([1, "a", {"b": null}])),
                 ]),
                0..6,
            )
        ) {
            let text = format!(
                "{{{}}}",
                fields.iter().map(|(k, v)| format!("{}:{v}", Value::from(*k))).collect::<Vec<_>>().join(",")
            );
            let value: Value = serde_json::from_str(&text).unwrap();
            let e = envelope(&text);
            for name in ["id", "text", "deadline_ms", "image"] {
                let expected = value.get(name).filter(|v| !v.is_null()).map(|v| match v {
                    Value::String(s) => Field::Str(s.clone().into()),
                    Value::Number(n) if n.as_i64().is_some() => Field::Int(n.as_i64().unwrap_or_default()),
                    Value::Number(_) => Field::Other("number"),
                    Value::Bool(_) => Field::Other("boolean"),
                    Value::Array(_) => Field::Other("array"),
                    _ => Field::Other("object"),
                });
                prop_assert_eq!(e.get(name).cloned(), expected, "{} in {}", name, text);
            }
        }
    }
}
