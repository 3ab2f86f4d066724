//! Turning a batch of request records into the records to write: decode each request, answer
//! expired ones without running the model, run each model once over its share of the batch, and
//! route anything unanswerable to the dead-letter topic with its reason. No Kafka I/O here.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rdkafka::message::{Headers, Message, OwnedMessage};

use crate::codec::{self, BadInput, BadInputKind, DeadLetterSource, Request, Response, Status};
use crate::config::Limits;
use crate::metrics;
use crate::models::Model;

/// A model and the topics it reads and writes.
pub struct ModelSlot {
    pub model: Box<dyn Model>,
    pub request_topic: String,
    pub result_topic: String,
}

/// A record to produce inside the batch's transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Produced {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, String)>,
}

enum Answer {
    Pending(Request),
    Done(Request, serde_json::Value),
    Expired(Request),
    Bad(BadInput),
}

/// The headers request decoding reads (non-UTF-8 values are ignored).
fn request_headers(message: &OwnedMessage) -> codec::RequestHeaders<'_> {
    let mut found = codec::RequestHeaders::default();
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            let value = header.value.and_then(|v| std::str::from_utf8(v).ok());
            if header.key.eq_ignore_ascii_case(codec::HEADER_CONTENT_TYPE) {
                found.content_type = value;
            } else if header.key == codec::HEADER_ID {
                found.id = value;
            }
        }
    }
    found
}

/// Processes one batch; returns one record per input record, in input order.
pub fn process_batch(
    batch: &[OwnedMessage],
    slots: &mut [ModelSlot],
    limits: &Limits,
    dead_letter_topic: &str,
) -> Vec<Produced> {
    let now_ms = unix_millis();
    let slot_of: Vec<Option<usize>> =
        batch.iter().map(|m| slots.iter().position(|s| s.request_topic == m.topic())).collect();
    let mut answers: Vec<Answer> = batch
        .iter()
        .zip(&slot_of)
        .map(|(m, slot)| match slot {
            None => {
                Answer::Bad(BadInput::new(BadInputKind::MissingField, format!("no model serves topic {}", m.topic())))
            }
            Some(slot) => {
                let default_id = || format!("{}/{}/{}", m.topic(), m.partition(), m.offset());
                let headers = request_headers(m);
                match codec::decode_request(slots[*slot].model.input_kind(), m.payload(), headers, default_id, limits) {
                    Ok(req) if req.deadline_ms.is_some_and(|d| d < now_ms) => Answer::Expired(req),
                    Ok(req) => Answer::Pending(req),
                    Err(bad) => Answer::Bad(bad),
                }
            }
        })
        .collect();

    for (index, slot) in slots.iter_mut().enumerate() {
        let members: Vec<usize> = (0..batch.len())
            .filter(|&i| slot_of[i] == Some(index) && matches!(answers[i], Answer::Pending(_)))
            .collect();
        if !members.is_empty() {
            run_model(slot, &members, &mut answers);
        }
    }

    batch
        .iter()
        .zip(answers)
        .zip(&slot_of)
        .map(|((message, answer), slot)| {
            let slot = slot.map(|s| &slots[s]);
            to_record(message, answer, slot, dead_letter_topic)
        })
        .collect()
}

fn placeholder() -> BadInput {
    BadInput::new(BadInputKind::InferenceFailed, "in progress")
}

/// Runs one model over its members; if the batch fails as a whole, retries each member alone so
/// that one bad request cannot sink its neighbours.
fn run_model(slot: &mut ModelSlot, members: &[usize], answers: &mut [Answer]) {
    let inputs: Vec<&codec::Input> = members
        .iter()
        .filter_map(|&i| match &answers[i] {
            Answer::Pending(req) => Some(&req.input),
            _ => None,
        })
        .collect();
    let started = Instant::now();
    let outputs = slot.model.infer(&inputs);
    metrics::batch(slot.model.name(), inputs.len(), started.elapsed());
    match outputs {
        Ok(outputs) if outputs.len() == members.len() => {
            for (&i, output) in members.iter().zip(outputs) {
                answers[i] = match std::mem::replace(&mut answers[i], Answer::Bad(placeholder())) {
                    Answer::Pending(req) => Answer::Done(req, output),
                    other => other,
                };
            }
        }
        batch_result => {
            let reason = match batch_result {
                Err(e) => e.to_string(),
                Ok(o) => format!("model returned {} results for {} inputs", o.len(), members.len()),
            };
            tracing::warn!(model = slot.model.name(), error = %reason, "batch inference failed; retrying one by one");
            for &i in members {
                let req = match std::mem::replace(&mut answers[i], Answer::Bad(placeholder())) {
                    Answer::Pending(req) => req,
                    other => {
                        answers[i] = other;
                        continue;
                    }
                };
                answers[i] = match slot.model.infer(&[&req.input]) {
                    Ok(mut out) if out.len() == 1 => Answer::Done(req, out.remove(0)),
                    Ok(_) => Answer::Bad(BadInput::new(BadInputKind::InferenceFailed, reason.clone())),
                    Err(e) => Answer::Bad(BadInput::new(BadInputKind::InferenceFailed, e.to_string())),
                };
            }
        }
    }
}

fn to_record(message: &OwnedMessage, answer: Answer, slot: Option<&ModelSlot>, dead_letter_topic: &str) -> Produced {
    let (slot, request, status, result) = match (slot, answer) {
        (Some(slot), Answer::Done(request, result)) => (slot, request, Status::Ok, Some(result)),
        (Some(slot), Answer::Expired(request)) => (slot, request, Status::Expired, None),
        (slot, Answer::Bad(bad)) => return dead_letter(message, &bad, slot, dead_letter_topic),
        (slot, _) => {
            // Not reached: every request of a served topic is decoded and answered above.
            let bad = BadInput::new(BadInputKind::InferenceFailed, "request was not answered");
            return dead_letter(message, &bad, slot, dead_letter_topic);
        }
    };
    let label = match status {
        Status::Ok => "ok",
        Status::Expired => "expired",
    };
    metrics::result_out(slot.model.name(), label);
    let payload = codec::encode_response(&Response {
        id: &request.id,
        model: slot.model.name(),
        model_version: slot.model.version(),
        status,
        result: result.as_ref(),
    });
    Produced {
        topic: slot.result_topic.clone(),
        key: message.key().map(<[u8]>::to_vec),
        payload: Some(payload),
        headers: Vec::new(),
    }
}

fn dead_letter(message: &OwnedMessage, bad: &BadInput, slot: Option<&ModelSlot>, dead_letter_topic: &str) -> Produced {
    let model = slot.map_or("", |s| s.model.name());
    metrics::dead_letter(model, bad.kind.as_str());
    tracing::debug!(topic = message.topic(), partition = message.partition(), offset = message.offset(), %bad, "dead letter");
    let source =
        DeadLetterSource { topic: message.topic(), partition: message.partition(), offset: message.offset(), model };
    Produced {
        topic: dead_letter_topic.to_string(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers: codec::dead_letter_headers(bad, source).to_vec(),
    }
}

fn unix_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Input, InputKind};
    use rdkafka::Timestamp;

    /// A stand-in model: answers with the text's length; fails a whole batch that contains "boom",
    /// and fails "boom" alone too.
    struct LengthModel {
        runs: usize,
    }

    impl Model for LengthModel {
        fn name(&self) -> &str {
            "len"
        }
        fn version(&self) -> &str {
            "1"
        }
        fn input_kind(&self) -> InputKind {
            InputKind::Text
        }
        fn infer(&mut self, batch: &[&Input]) -> crate::Result<Vec<serde_json::Value>> {
            self.runs += 1;
            batch
                .iter()
                .map(|input| match input {
                    Input::Text(t) if t == "boom" => Err(crate::Error::Ort("boom".into())),
                    Input::Text(t) => Ok(serde_json::json!(t.len())),
                    _ => Err(crate::Error::Ort("not text".into())),
                })
                .collect()
        }
    }

    fn msg(offset: i64, value: &[u8]) -> OwnedMessage {
        OwnedMessage::new(
            Some(value.to_vec()),
            Some(format!("k{offset}").into_bytes()),
            "req".into(),
            Timestamp::NotAvailable,
            0,
            offset,
            None,
        )
    }

    fn slots() -> Vec<ModelSlot> {
        vec![ModelSlot {
            model: Box::new(LengthModel { runs: 0 }),
            request_topic: "req".into(),
            result_topic: "res".into(),
        }]
    }

    fn json(p: &Produced) -> serde_json::Value {
        serde_json::from_slice(p.payload.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn one_record_per_request_in_order_with_dead_letters_routed() {
        let batch = [
            msg(0, br#"{"id": "a", "text": "hello"}"#),
            msg(1, b"nope"),
            msg(2, br#"{"id": "c", "text": "hi", "deadline_ms": 1}"#),
            msg(3, br#"{"text": "four"}"#),
        ];
        let out = process_batch(&batch, &mut slots(), &Limits::default(), "dlq");
        assert_eq!(out.len(), 4);
        assert_eq!((out[0].topic.as_str(), json(&out[0])["result"].clone()), ("res", serde_json::json!(5)));
        assert_eq!(out[0].key.as_deref(), Some(&b"k0"[..]));
        assert_eq!(out[1].topic, "dlq");
        assert_eq!(out[1].payload.as_deref(), Some(&b"nope"[..]));
        assert!(out[1].headers.contains(&("tidal.error.kind", "invalid_json".into())));
        assert!(out[1].headers.contains(&("tidal.source.offset", "1".into())));
        assert_eq!(json(&out[2])["status"], "expired");
        assert_eq!(json(&out[3])["id"], "req/0/3");
    }

    #[test]
    fn a_failing_batch_is_retried_one_by_one() {
        let batch = [msg(0, br#"{"text": "ab"}"#), msg(1, br#"{"text": "boom"}"#), msg(2, br#"{"text": "abc"}"#)];
        let mut slots = slots();
        let out = process_batch(&batch, &mut slots, &Limits::default(), "dlq");
        assert_eq!(json(&out[0])["result"], 2);
        assert_eq!(out[1].topic, "dlq");
        assert!(out[1].headers.contains(&("tidal.error.kind", "inference_failed".into())));
        assert_eq!(json(&out[2])["result"], 3);
    }
}
