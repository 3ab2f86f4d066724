//! The gateway's HTTP API.
//!
//! `POST /v1/models/{model}` with the request as the topic takes it (a JSON object; or, for
//! single-image models, a raw JPEG/PNG with `Content-Type: image/...`). The gateway adds an `id`
//! when there is none and a `deadline_ms` at its timeout (so the processor skips work nobody
//! waits for any more), produces the request keyed by its id, and answers with the result record:
//!
//! | status | when |
//! |---|---|
//! | 200 | the result (`{"id", "model", "model_version", "status": "ok", "result"}`) |
//! | 400 | the body is not a JSON object (or not an image for a raw upload) |
//! | 404 | the model is not one this gateway serves |
//! | 409 | a request with this id is already waiting here |
//! | 413 | the body exceeds `--max-body` |
//! | 422 | the processor dead-lettered the request (`error.kind`, `error.reason`) |
//! | 503 | the request could not be written to Kafka |
//! | 504 | no result within the timeout, or the processor found the deadline passed |
//!
//! `GET /health` answers 200 while the result reader runs.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};

use super::waiters::{fingerprint, Answer, Registration, Waiting};
use super::Gateway;
use crate::codec::{HEADER_CONTENT_TYPE, HEADER_ID};

/// Query parameters of a prediction.
#[derive(Debug, serde::Deserialize)]
pub struct PredictQuery {
    /// Overrides the gateway's timeout (capped at its `--max-timeout`).
    timeout_ms: Option<u64>,
}

/// The router.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let max_body = gateway.settings.max_body_bytes;
    Router::new()
        .route("/v1/models/{model}", post(predict))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(gateway)
}

async fn health(State(gateway): State<Arc<Gateway>>) -> Response {
    if gateway.listener_alive() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "result reader stopped\n").into_response()
    }
}

/// A request ready to produce.
#[derive(Debug)]
struct Outgoing {
    id: String,
    value: Vec<u8>,
    content_type: Option<String>,
}

async fn predict(
    State(gateway): State<Arc<Gateway>>,
    Path(model): Path<String>,
    Query(query): Query<PredictQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let settings = &gateway.settings;
    if !settings.models.contains(&model) {
        let reason = format!("unknown model '{model}': this gateway serves {:?}", settings.models);
        return error(StatusCode::NOT_FOUND, None, &reason);
    }
    let timeout = query.timeout_ms.map(Duration::from_millis).unwrap_or(settings.timeout).min(settings.max_timeout);
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let outgoing = match outgoing(content_type, &body, timeout) {
        Ok(outgoing) => outgoing,
        Err(reason) => return error(StatusCode::BAD_REQUEST, None, &reason),
    };
    let id = outgoing.id.clone();
    let waiting = match gateway.waiters.register(&id, fingerprint(&body)) {
        Registration::New(waiting) => waiting,
        Registration::Joined(waiting) => {
            // A retry of a call still waiting: wait with it; the request is in the stream once.
            let (outcome, response) = respond(&id, waiting, timeout, started).await;
            return finish(&model, outcome, started, response);
        }
        Registration::Answered(answer) => {
            let (outcome, response) = answer_response(&id, answer);
            return finish(&model, outcome, started, response);
        }
        Registration::Conflict => {
            let reason = "a request with this id and another body is waiting or was answered on this gateway; \
                          use unique ids (a retry must repeat the same body)";
            return error(StatusCode::CONFLICT, Some(&id), reason);
        }
    };
    let topic = format!("{}{model}", settings.request_prefix);
    let mut kafka_headers = OwnedHeaders::new();
    if let Some(content_type) = &outgoing.content_type {
        kafka_headers = kafka_headers
            .insert(Header { key: HEADER_CONTENT_TYPE, value: Some(content_type.as_str()) })
            .insert(Header { key: HEADER_ID, value: Some(id.as_str()) });
    }
    let record = FutureRecord::to(&topic).key(id.as_str()).payload(outgoing.value.as_slice()).headers(kafka_headers);
    if let Err((e, _)) = gateway.producer.send(record, timeout).await {
        let reason = format!("could not write the request to {topic}: {e}");
        return finish(&model, "produce_failed", started, error(StatusCode::SERVICE_UNAVAILABLE, Some(&id), &reason));
    }
    let (outcome, response) = respond(&id, waiting, timeout, started).await;
    finish(&model, outcome, started, response)
}

/// Waits for the answer until the call's timeout; the outcome (for the metrics) and the response.
async fn respond(id: &str, mut waiting: Waiting<'_>, timeout: Duration, started: Instant) -> (&'static str, Response) {
    let waited = timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(waited, &mut waiting.answer).await {
        Ok(Ok(answer)) => answer_response(id, answer),
        Ok(Err(_)) => ("internal", error(StatusCode::INTERNAL_SERVER_ERROR, Some(id), "the result reader stopped")),
        Err(_) => {
            let reason = format!(
                "no result within {} ms; the request stays in the stream (its deadline_ms makes the \
                 processor skip it if still queued) — raise timeout_ms, or add processor replicas",
                timeout.as_millis()
            );
            ("timeout", error(StatusCode::GATEWAY_TIMEOUT, Some(id), &reason))
        }
    }
}

fn answer_response(id: &str, answer: Answer) -> (&'static str, Response) {
    match answer {
        Answer::Result(result) if result.get("status").and_then(Value::as_str) == Some("expired") => {
            ("expired", (StatusCode::GATEWAY_TIMEOUT, Json(result)).into_response())
        }
        Answer::Result(result) => ("ok", (StatusCode::OK, Json(result)).into_response()),
        Answer::DeadLetter { kind, reason } => {
            let body = json!({"id": id, "error": {"kind": kind, "reason": reason}});
            ("dead_letter", (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response())
        }
    }
}

/// Builds the record value: raw images pass through with their content type; JSON objects get
/// an `id` and a `deadline_ms` when they have none.
fn outgoing(content_type: &str, body: &[u8], timeout: Duration) -> Result<Outgoing, String> {
    if content_type.trim().to_ascii_lowercase().starts_with("image/") {
        let id = uuid::Uuid::new_v4().to_string();
        return Ok(Outgoing { id, value: body.to_vec(), content_type: Some(content_type.to_string()) });
    }
    let mut fields = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Err("the body must be a JSON object like {\"text\": \"...\"}".into()),
        Err(e) => {
            return Err(format!(
                "the body is not JSON ({e}); send a JSON object, or an image with Content-Type: image/png|jpeg"
            ))
        }
    };
    let id = match fields.get("id") {
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            fields.insert("id".into(), Value::String(id.clone()));
            id
        }
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(_) => return Err("`id` must be a non-empty string (or left out: the gateway makes one)".into()),
    };
    if !fields.contains_key("deadline_ms") {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        fields.insert("deadline_ms".into(), json!((now + timeout).as_millis() as u64));
    }
    let value = serde_json::to_vec(&Value::Object(fields)).map_err(|e| format!("re-encoding the request: {e}"))?;
    Ok(Outgoing { id, value, content_type: None })
}

fn error(status: StatusCode, id: Option<&str>, reason: &str) -> Response {
    (status, Json(json!({"id": id, "error": {"reason": reason}}))).into_response()
}

fn finish(model: &str, outcome: &'static str, started: Instant, response: Response) -> Response {
    crate::metrics::gateway_request(model, outcome, started.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_requests_get_an_id_and_a_deadline_when_they_have_none() {
        let out = outgoing("application/json", br#"{"text":"fine"}"#, Duration::from_secs(5)).unwrap();
        let value: Value = serde_json::from_slice(&out.value).unwrap();
        assert_eq!(value["id"], out.id.as_str());
        assert_eq!(value["text"], "fine");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let deadline = value["deadline_ms"].as_u64().unwrap();
        assert!(deadline > now && deadline <= now + 5_000, "deadline {deadline} is the timeout from now ({now})");
    }

    #[test]
    fn a_client_id_and_deadline_are_kept() {
        let body = br#"{"id":"mine","text":"x","deadline_ms":42}"#;
        let out = outgoing("", body, Duration::from_secs(5)).unwrap();
        assert_eq!(out.id, "mine");
        let value: Value = serde_json::from_slice(&out.value).unwrap();
        assert_eq!(value["deadline_ms"], 42);
    }

    #[test]
    fn raw_images_pass_through_with_their_content_type() {
        let out = outgoing("image/png", b"\x89PNG...", Duration::from_secs(1)).unwrap();
        assert_eq!(out.value, b"\x89PNG...");
        assert_eq!(out.content_type.as_deref(), Some("image/png"));
        assert!(!out.id.is_empty());
    }

    #[test]
    fn bodies_that_are_not_objects_are_refused_with_a_hint() {
        assert!(outgoing("", b"[1,2]", Duration::from_secs(1)).unwrap_err().contains("JSON object"));
        assert!(outgoing("", b"hello", Duration::from_secs(1)).unwrap_err().contains("not JSON"));
        assert!(outgoing("", br#"{"id": 7}"#, Duration::from_secs(1)).unwrap_err().contains("`id`"));
    }
}
