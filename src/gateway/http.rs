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
//! | 401 | tenants are declared and the call has no valid `Authorization: Bearer <key>` |
//! | 403 | the key's tenant may not call this model |
//! | 404 | the model is not one this gateway serves |
//! | 409 | the id is waiting or was answered here with another body |
//! | 413 | the body exceeds `--max-body` |
//! | 422 | the processor dead-lettered the request (`error.kind`, `error.reason`) |
//! | 429 | the tenant is over its rate (`Retry-After`) |
//! | 503 | the gateway is at its in-flight cap (`Retry-After`), or Kafka refused the request |
//! | 504 | no result within the timeout (the request not even written to Kafka in it, or no answer), |
//! |     | or the processor found the deadline passed |
//!
//! `GET /health` answers 200 while the result reader runs.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};

use super::access::{Denied, Tenant};
use super::quota::Full;
use super::waiters::{fingerprint, Answer, Registration, Waiting};
use super::Gateway;
use crate::codec::{HEADER_CONTENT_TYPE, HEADER_ID, HEADER_TENANT};

/// Query parameters of a prediction.
#[derive(Debug, serde::Deserialize)]
pub struct PredictQuery {
    /// Overrides the gateway's timeout (capped at its `--max-timeout`).
    timeout_ms: Option<u64>,
}

/// The router.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new().route("/v1/models/{model}", post(predict)).route("/health", get(health)).with_state(gateway)
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

/// A call refused or ended: its outcome (for the metrics) and the response.
type Ended = (&'static str, Response);

async fn predict(
    State(gateway): State<Arc<Gateway>>,
    Path(model): Path<String>,
    Query(query): Query<PredictQuery>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let tenant = match caller(&gateway, &model, &parts.headers, started) {
        Ok(tenant) => tenant,
        Err(refused) => {
            let (tenant, (outcome, response)) = *refused;
            return finish(&model, tenant, outcome, started, response);
        }
    };
    let label = tenant.map_or(ANONYMOUS, |t| t.name.as_str());
    let (outcome, response) = match admitted_call(&gateway, &model, tenant, query, &parts.headers, body, started).await
    {
        Ok(ended) | Err(ended) => ended,
    };
    finish(&model, label, outcome, started, response)
}

/// The tenant label of calls to a gateway without tenants, and of calls without a valid key.
const ANONYMOUS: &str = "-";

/// Who calls, if they may call this model now (404, 401, 403, 429 otherwise).
fn caller<'g>(
    gateway: &'g Gateway,
    model: &str,
    headers: &HeaderMap,
    now: Instant,
) -> Result<Option<&'g Tenant>, Box<(&'g str, Ended)>> {
    let settings = &gateway.settings;
    if !settings.models.iter().any(|m| m == model) {
        let reason = format!("unknown model '{model}': this gateway serves {:?}", settings.models);
        return Err(Box::new((ANONYMOUS, ("unknown_model", error(StatusCode::NOT_FOUND, None, &reason)))));
    }
    let Some(tenants) = &settings.tenants else { return Ok(None) };
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let tenant = match tenants.authenticate(authorization) {
        Ok(tenant) => tenant,
        Err(denied) => {
            let reason = match denied {
                Denied::NoKey => {
                    "no API key: send `Authorization: Bearer <key>` (ask the gateway's operator for a key)"
                }
                Denied::UnknownKey => "this API key is not valid here (revoked, mistyped, or for another gateway)",
            };
            let mut response = error(StatusCode::UNAUTHORIZED, None, reason);
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return Err(Box::new((ANONYMOUS, ("unauthorized", response))));
        }
    };
    if !tenant.may_call(model) {
        let reason = format!("tenant '{}' may not call '{model}' (ask the operator to grant it)", tenant.name);
        return Err(Box::new((tenant.name.as_str(), ("forbidden", error(StatusCode::FORBIDDEN, None, &reason)))));
    }
    if let Some(Err(wait)) = tenant.bucket.as_ref().map(|bucket| bucket.take(now)) {
        let reason = format!("tenant '{}' is over its rate; retry after the Retry-After header's seconds", tenant.name);
        let response = with_retry_after(error(StatusCode::TOO_MANY_REQUESTS, None, &reason), wait);
        return Err(Box::new((tenant.name.as_str(), ("rate_limited", response))));
    }
    Ok(Some(tenant))
}

/// A call that passed `caller`: within the gateway's caps (503), its body read (413, 400), its
/// request produced (503, 504) and its answer awaited.
async fn admitted_call(
    gateway: &Gateway,
    model: &str,
    tenant: Option<&Tenant>,
    query: PredictQuery,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Result<Ended, Ended> {
    let settings = &gateway.settings;
    let max_body = settings.max_body_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > max_body) {
        let reason = format!("the body exceeds the gateway's limit of {max_body} bytes");
        return Err(("too_large", error(StatusCode::PAYLOAD_TOO_LARGE, None, &reason)));
    }
    let _admitted = gateway.admission.admit(declared.unwrap_or(max_body)).map_err(|full| {
        let reason = match full {
            Full::Requests(cap) => format!("the gateway holds its maximum of {cap} requests in flight; retry shortly"),
            Full::Bytes(cap) => {
                format!("the gateway holds its maximum of {cap} request bytes in flight; retry shortly")
            }
        };
        let response = with_retry_after(error(StatusCode::SERVICE_UNAVAILABLE, None, &reason), Duration::from_secs(1));
        ("overloaded", response)
    })?;
    let body = axum::body::to_bytes(body, max_body).await.map_err(|e| {
        let reason = format!("the body could not be read within the gateway's limit of {max_body} bytes: {e}");
        ("too_large", error(StatusCode::PAYLOAD_TOO_LARGE, None, &reason))
    })?;
    let timeout = query.timeout_ms.map(Duration::from_millis).unwrap_or(settings.timeout).min(settings.max_timeout);
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let outgoing = outgoing(content_type, &body, timeout)
        .map_err(|reason| ("bad_request", error(StatusCode::BAD_REQUEST, None, &reason)))?;
    let id = outgoing.id.clone();
    let waiting = match gateway.waiters.register(&id, fingerprint(&body)) {
        Registration::New(waiting) => waiting,
        // A retry of a call still waiting: wait with it; the request is in the stream once.
        Registration::Joined(waiting) => return Ok(respond(&id, waiting, timeout, started).await),
        Registration::Answered(answer) => return Ok(answer_response(&id, answer)),
        Registration::Conflict => {
            let reason = "a request with this id and another body is waiting or was answered on this gateway; \
                          use unique ids (a retry must repeat the same body)";
            return Err(("conflict", error(StatusCode::CONFLICT, Some(&id), reason)));
        }
    };
    drop(body);
    produce(gateway, model, tenant, &outgoing, timeout.saturating_sub(started.elapsed())).await?;
    drop(outgoing.value);
    Ok(respond(&id, waiting, timeout, started).await)
}

/// Writes the request to its topic within `within` (the call's remaining time): 503 if Kafka
/// refuses it, 504 if it is not written in time (a broker outage never holds a caller longer
/// than its own timeout).
async fn produce(
    gateway: &Gateway,
    model: &str,
    tenant: Option<&Tenant>,
    outgoing: &Outgoing,
    within: Duration,
) -> Result<(), Ended> {
    let id = outgoing.id.as_str();
    let topics = &gateway.settings.topics;
    let topic = match tenant {
        Some(tenant) if tenant.priority => topics.priority_requests(model),
        _ => format!("{}{model}", topics.request_prefix),
    };
    let mut kafka_headers = OwnedHeaders::new();
    if let Some(content_type) = &outgoing.content_type {
        kafka_headers = kafka_headers
            .insert(Header { key: HEADER_CONTENT_TYPE, value: Some(content_type.as_str()) })
            .insert(Header { key: HEADER_ID, value: Some(id) });
    }
    if let Some(tenant) = tenant {
        kafka_headers = kafka_headers.insert(Header { key: HEADER_TENANT, value: Some(tenant.name.as_str()) });
    }
    let record = FutureRecord::to(&topic).key(id).payload(outgoing.value.as_slice()).headers(kafka_headers);
    match tokio::time::timeout(within, gateway.producer.send(record, within)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => {
            let reason = format!("could not write the request to {topic}: {e}");
            Err(("produce_failed", error(StatusCode::SERVICE_UNAVAILABLE, Some(id), &reason)))
        }
        Err(_) => {
            let reason = format!(
                "the request was not written to {topic} within {} ms (is Kafka reachable?); it may still be \
                 written later, and its deadline_ms makes the processor skip it then",
                within.as_millis()
            );
            Err(("produce_timeout", error(StatusCode::GATEWAY_TIMEOUT, Some(id), &reason)))
        }
    }
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

/// Adds `Retry-After` in whole seconds (at least 1).
fn with_retry_after(mut response: Response, wait: Duration) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    response
}

fn finish(model: &str, tenant: &str, outcome: &'static str, started: Instant, response: Response) -> Response {
    crate::metrics::gateway_request(model, tenant, outcome, started.elapsed());
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
