//! Turning a batch of request records into the records to write: decode each request, answer
//! expired ones without running the model, run each model over its share of the batch, and route
//! anything unanswerable to the dead-letter topic with its reason. No Kafka I/O here.
//!
//! Memory stays within a budget whatever the backlog holds: requests are decoded just before
//! their model runs, and a model runs as soon as the pixels decoded for it reach
//! `batch.max_bytes`, after which they are dropped; at most one request more than the budget is
//! decoded at once. A panic while decoding or running one request (a model or image-library bug)
//! is caught and dead-letters that request alone: a crash would restart into the same batch.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::types::RDKafkaErrorCode;

use crate::codec::{self, BadInput, BadInputKind, DeadLetterSource, Request, Response, Status};
use crate::config::Limits;
use crate::metrics;
use crate::models::Model;

/// A model and the topics it reads and writes.
pub struct ModelSlot {
    pub model: Box<dyn Model>,
    pub request_topic: String,
    /// Its priority request topic, if it has a priority lane (`[priority]`).
    pub priority_topic: Option<String>,
    pub result_topic: String,
}

impl ModelSlot {
    /// The request topics it reads: the normal one, then the priority one if any.
    pub fn request_topics(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.request_topic.as_str()).chain(self.priority_topic.as_deref())
    }

    /// Whether requests on `topic` are for this model.
    pub fn reads(&self, topic: &str) -> bool {
        self.request_topics().any(|t| t == topic)
    }
}

/// A record to produce inside the batch's transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, String)>,
}

/// What processing needs besides the records and the models.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub limits: &'a Limits,
    pub dead_letter_topic: &'a str,
    /// Most decoded bytes (image pixels) held at once before the model runs on them.
    pub max_decoded_bytes: usize,
    /// Fault injection: panic while running the model on the request with this id.
    pub panic_on_id: Option<&'a str>,
}

enum RequestOutcome {
    Unanswered,
    Done { id: String, result: serde_json::Value },
    Expired { id: String },
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
pub fn process_batch(batch: &[OwnedMessage], slots: &mut [ModelSlot], rules: &Rules<'_>) -> Vec<OutgoingRecord> {
    let now_ms = unix_millis();
    let slot_of: Vec<Option<usize>> = batch.iter().map(|m| slots.iter().position(|s| s.reads(m.topic()))).collect();
    let mut answers: Vec<RequestOutcome> = slot_of
        .iter()
        .zip(batch)
        .map(|(slot, m)| match slot {
            None => RequestOutcome::Bad(BadInput::new(
                BadInputKind::MissingField,
                format!("no model serves topic {}", m.topic()),
            )),
            Some(_) => RequestOutcome::Unanswered,
        })
        .collect();

    for (index, slot) in slots.iter_mut().enumerate() {
        let mut pending: Vec<(usize, Request)> = Vec::new();
        let mut pending_bytes = 0;
        for (i, message) in batch.iter().enumerate().filter(|(i, _)| slot_of[*i] == Some(index)) {
            answers[i] = match decode(message, slot.model.as_ref(), rules.limits) {
                Ok(request) if request.deadline_ms.is_some_and(|d| d < now_ms) => {
                    RequestOutcome::Expired { id: request.id }
                }
                Ok(request) => {
                    pending_bytes += request.input.decoded_bytes();
                    pending.push((i, request));
                    RequestOutcome::Unanswered
                }
                Err(bad) => RequestOutcome::Bad(bad),
            };
            if pending_bytes >= rules.max_decoded_bytes {
                run_model(slot, std::mem::take(&mut pending), &mut answers, rules);
                pending_bytes = 0;
            }
        }
        if !pending.is_empty() {
            run_model(slot, pending, &mut answers, rules);
        }
    }

    let mut answered: BTreeMap<(&str, &'static str), usize> = BTreeMap::new();
    let records = batch
        .iter()
        .zip(answers)
        .zip(&slot_of)
        .map(|((message, answer), slot)| {
            let slot = slot.map(|s| &slots[s]);
            to_record(message, answer, slot, rules, &mut answered)
        })
        .collect();
    for ((model, status), count) in answered {
        metrics::results_out(model, status, count);
    }
    records
}

/// Decodes one request; a panic in the decoder is this request's bad input.
fn decode(message: &OwnedMessage, model: &dyn Model, limits: &Limits) -> Result<Request, BadInput> {
    let default_id = || format!("{}/{}/{}", message.topic(), message.partition(), message.offset());
    let headers = request_headers(message);
    catch_unwind(AssertUnwindSafe(|| {
        codec::decode_request(model.input_kind(), message.payload(), headers, default_id, limits)
    }))
    .unwrap_or_else(|panic| Err(panicked(model.name(), "decoding", &panic)))
}

/// Runs the model over `pending`; if the run fails or panics as a whole, runs each request alone
/// so that one bad request cannot sink its neighbours. The decoded inputs are dropped on return.
fn run_model(slot: &mut ModelSlot, pending: Vec<(usize, Request)>, answers: &mut [RequestOutcome], rules: &Rules<'_>) {
    let started = Instant::now();
    let outcome = guarded_infer(slot, &pending.iter().map(|(_, r)| r).collect::<Vec<_>>(), rules);
    metrics::batch(slot.model.name(), pending.len(), started.elapsed());
    let failure = match outcome {
        Ok(outputs) if outputs.len() == pending.len() => {
            for ((i, request), result) in pending.into_iter().zip(outputs) {
                answers[i] = RequestOutcome::Done { id: request.id, result };
            }
            return;
        }
        Ok(outputs) => BadInput::new(
            BadInputKind::InferenceFailed,
            format!("model returned {} results for {} inputs", outputs.len(), pending.len()),
        ),
        Err(bad) => bad,
    };
    if pending.len() > 1 {
        tracing::warn!(model = slot.model.name(), error = %failure, "batch inference failed; retrying one by one");
    }
    for (i, request) in pending {
        answers[i] = match guarded_infer(slot, &[&request], rules) {
            Ok(mut out) if out.len() == 1 => RequestOutcome::Done { id: request.id, result: out.remove(0) },
            Ok(_) => RequestOutcome::Bad(failure.clone()),
            Err(bad) => RequestOutcome::Bad(bad),
        };
    }
}

/// One model run with panics caught: a panic becomes `inference_failed` with its message.
fn guarded_infer(
    slot: &mut ModelSlot,
    requests: &[&Request],
    rules: &Rules<'_>,
) -> Result<Vec<serde_json::Value>, BadInput> {
    let model = &mut slot.model;
    let run = catch_unwind(AssertUnwindSafe(|| {
        if let Some(id) = rules.panic_on_id.filter(|id| requests.iter().any(|r| r.id == *id)) {
            panic!("injected fault: faults.panic_on_id = {id:?}");
        }
        let inputs: Vec<&codec::Input> = requests.iter().map(|r| &r.input).collect();
        model.infer(&inputs)
    }));
    match run {
        Ok(Ok(outputs)) => Ok(outputs),
        Ok(Err(e)) => Err(BadInput::new(BadInputKind::InferenceFailed, e.to_string())),
        Err(panic) => Err(panicked(slot.model.name(), "running the model", &panic)),
    }
}

/// The bad input for a caught panic; counted and logged, since it is a bug to report.
fn panicked(model: &str, stage: &'static str, panic: &Box<dyn std::any::Any + Send>) -> BadInput {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    metrics::panic_caught(model, stage);
    tracing::error!(model, stage, panic = %message, "caught a panic; the request goes to the dead-letter topic");
    BadInput::new(BadInputKind::InferenceFailed, format!("panicked while {stage}: {message}"))
}

/// The record answering one request; a result is counted in `answered` by (model, status).
fn to_record<'s>(
    message: &OwnedMessage,
    answer: RequestOutcome,
    slot: Option<&'s ModelSlot>,
    rules: &Rules<'_>,
    answered: &mut BTreeMap<(&'s str, &'static str), usize>,
) -> OutgoingRecord {
    let (slot, id, status, result) = match (slot, answer) {
        (Some(slot), RequestOutcome::Done { id, result }) => (slot, id, Status::Ok, Some(result)),
        (Some(slot), RequestOutcome::Expired { id }) => (slot, id, Status::Expired, None),
        (slot, RequestOutcome::Bad(bad)) => return dead_letter(message, &bad, slot, rules.dead_letter_topic),
        (slot, _) => {
            // Not reached: every request of a served topic is decoded and answered above.
            let bad = BadInput::new(BadInputKind::InferenceFailed, "request was not answered");
            return dead_letter(message, &bad, slot, rules.dead_letter_topic);
        }
    };
    let payload = codec::encode_response(&Response {
        id: &id,
        model: slot.model.name(),
        model_version: slot.model.version(),
        status,
        result: result.as_ref(),
    });
    if payload.len() > rules.limits.max_result_bytes {
        let bad = BadInput::new(
            BadInputKind::ResultTooLarge,
            format!(
                "the result is {} bytes, limit is {} (limits.max_result_bytes)",
                payload.len(),
                rules.limits.max_result_bytes
            ),
        );
        return dead_letter(message, &bad, Some(slot), rules.dead_letter_topic);
    }
    let status = match status {
        Status::Ok => "ok",
        Status::Expired => "expired",
    };
    *answered.entry((slot.model.name(), status)).or_default() += 1;
    OutgoingRecord {
        topic: slot.result_topic.clone(),
        key: message.key().map(<[u8]>::to_vec),
        payload: Some(payload),
        headers: Vec::new(),
    }
}

/// The record that replaces one the broker refused `refusals` times for a reason of its own: first
/// a dead letter with the original value; if the dead-letter topic refuses that too, a dead
/// letter without the value (its headers still say where the request is).
pub fn refused_record(
    message: &OwnedMessage,
    refused: &OutgoingRecord,
    code: RDKafkaErrorCode,
    refusals: u32,
    slots: &[ModelSlot],
    rules: &Rules<'_>,
) -> OutgoingRecord {
    let slot = slots.iter().find(|s| s.reads(message.topic()));
    let kind = match code {
        RDKafkaErrorCode::MessageSizeTooLarge
        | RDKafkaErrorCode::MessageBatchTooLarge
        | RDKafkaErrorCode::InvalidMessageSize => BadInputKind::ResultTooLarge,
        _ => BadInputKind::DeliveryFailed,
    };
    let what = if refused.topic == rules.dead_letter_topic { "dead letter" } else { "result" };
    let size = refused.payload.as_ref().map_or(0, Vec::len);
    let mut bad = BadInput::new(kind, format!("{} refused the {what} ({size} bytes): {code}", refused.topic));
    if refusals >= 2 {
        bad.reason.push_str("; the dead-letter topic refused the original value too, so it is left out");
    }
    let mut record = dead_letter(message, &bad, slot, rules.dead_letter_topic);
    if refusals >= 2 {
        record.payload = None;
    }
    record
}

fn dead_letter(
    message: &OwnedMessage,
    bad: &BadInput,
    slot: Option<&ModelSlot>,
    dead_letter_topic: &str,
) -> OutgoingRecord {
    let model = slot.map_or("", |s| s.model.name());
    metrics::dead_letter(model, bad.kind.as_str());
    tracing::debug!(topic = message.topic(), partition = message.partition(), offset = message.offset(), %bad, "dead letter");
    let source =
        DeadLetterSource { topic: message.topic(), partition: message.partition(), offset: message.offset(), model };
    OutgoingRecord {
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
    /// and fails "boom" alone too; panics on "panic"; remembers the size of every run.
    struct LengthModel {
        runs: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
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
            self.runs.lock().unwrap().push(batch.len());
            if batch.iter().any(|i| matches!(i, Input::Text(t) if t == "panic")) {
                panic!("index out of bounds in a post-processor");
            }
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
        slots_counting(Default::default())
    }

    fn slots_counting(runs: std::sync::Arc<std::sync::Mutex<Vec<usize>>>) -> Vec<ModelSlot> {
        vec![ModelSlot {
            model: Box::new(LengthModel { runs }),
            request_topic: "req".into(),
            priority_topic: None,
            result_topic: "res".into(),
        }]
    }

    fn rules(limits: &Limits) -> Rules<'_> {
        Rules { limits, dead_letter_topic: "dlq", max_decoded_bytes: 1 << 20, panic_on_id: None }
    }

    fn kind(p: &OutgoingRecord) -> Option<&str> {
        p.headers.iter().find(|(k, _)| *k == "tidal.error.kind").map(|(_, v)| v.as_str())
    }

    fn json(p: &OutgoingRecord) -> serde_json::Value {
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
        let out = process_batch(&batch, &mut slots(), &rules(&Limits::default()));
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
        let out = process_batch(&batch, &mut slots, &rules(&Limits::default()));
        assert_eq!(json(&out[0])["result"], 2);
        assert_eq!(out[1].topic, "dlq");
        assert!(out[1].headers.contains(&("tidal.error.kind", "inference_failed".into())));
        assert_eq!(json(&out[2])["result"], 3);
    }

    #[test]
    fn a_panic_dead_letters_that_request_alone() {
        let batch = [msg(0, br#"{"text": "ab"}"#), msg(1, br#"{"text": "panic"}"#), msg(2, br#"{"text": "abc"}"#)];
        let out = process_batch(&batch, &mut slots(), &rules(&Limits::default()));
        assert_eq!(json(&out[0])["result"], 2);
        assert_eq!(kind(&out[1]), Some("inference_failed"));
        let reason = out[1].headers.iter().find(|(k, _)| *k == "tidal.error.reason").unwrap();
        assert!(reason.1.contains("panicked") && reason.1.contains("index out of bounds"), "{}", reason.1);
        assert_eq!(json(&out[2])["result"], 3);
    }

    #[test]
    fn the_injected_panic_fault_hits_only_its_request() {
        let batch = [msg(0, br#"{"id": "a", "text": "ab"}"#), msg(1, br#"{"id": "b", "text": "xyz"}"#)];
        let limits = Limits::default();
        let rules = Rules { panic_on_id: Some("b"), ..rules(&limits) };
        let out = process_batch(&batch, &mut slots(), &rules);
        assert_eq!(json(&out[0])["result"], 2);
        assert_eq!(kind(&out[1]), Some("inference_failed"));
    }

    #[test]
    fn the_model_runs_whenever_the_decoded_bytes_reach_the_budget() {
        let texts: Vec<OwnedMessage> =
            (0..7).map(|i| msg(i, serde_json::json!({"text": "x".repeat(10)}).to_string().as_bytes())).collect();
        let runs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let limits = Limits::default();
        let rules = Rules { max_decoded_bytes: 25, ..rules(&limits) };
        let out = process_batch(&texts, &mut slots_counting(runs.clone()), &rules);
        assert!(out.iter().all(|p| p.topic == "res"));
        // 10 bytes each: a run at 30 bytes (3 requests), twice, then the last one.
        assert_eq!(*runs.lock().unwrap(), vec![3, 3, 1]);
    }

    #[test]
    fn a_result_over_the_limit_is_a_dead_letter() {
        let limits = Limits { max_result_bytes: 100, ..Limits::default() };
        let long_id = "i".repeat(120);
        let batch = [
            msg(0, br#"{"id": "short", "text": "ab"}"#),
            msg(1, serde_json::json!({"id": long_id, "text": "ab"}).to_string().as_bytes()),
        ];
        let out = process_batch(&batch, &mut slots(), &rules(&limits));
        assert_eq!(out[0].topic, "res");
        assert_eq!((out[1].topic.as_str(), kind(&out[1])), ("dlq", Some("result_too_large")));
    }

    #[test]
    fn a_refused_result_becomes_a_dead_letter_then_a_dead_letter_without_its_value() {
        let limits = Limits::default();
        let batch = [msg(4, br#"{"id": "a", "text": "ab"}"#)];
        let result = process_batch(&batch, &mut slots(), &rules(&limits)).remove(0);
        let code = RDKafkaErrorCode::MessageSizeTooLarge;
        let first = refused_record(&batch[0], &result, code, 1, &slots(), &rules(&limits));
        assert_eq!((first.topic.as_str(), kind(&first)), ("dlq", Some("result_too_large")));
        assert_eq!(first.payload, batch[0].payload().map(<[u8]>::to_vec));
        assert!(first.headers.contains(&("tidal.source.offset", "4".into())));
        let second = refused_record(&batch[0], &first, code, 2, &slots(), &rules(&limits));
        assert_eq!((second.payload.as_ref(), kind(&second)), (None, Some("result_too_large")));
        let other = refused_record(&batch[0], &result, RDKafkaErrorCode::InvalidRecord, 1, &slots(), &rules(&limits));
        assert_eq!(kind(&other), Some("delivery_failed"));
    }
}
