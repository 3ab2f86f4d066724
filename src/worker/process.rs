//! Turning a batch of request records into the records to write: decode each request, answer
//! expired ones without running the model, run each model once over its share of the batch, and
//! route anything unanswerable to the dead-letter topic with its reason. No Kafka I/O here.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rdkafka::message::{Message, OwnedMessage};

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
                match codec::decode_request(slots[*slot].model.input_kind(), m.payload(), default_id, limits) {
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
