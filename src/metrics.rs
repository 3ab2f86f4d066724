//! Metric names (one place, prefixed `tidal_`) and the Prometheus exporter. Each recording
//! function is the single way an event is counted, so names and labels cannot drift.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::error::{Error, Result};
use crate::health::HealthSlot;

pub const RECORDS_IN: &str = "tidal_records_in_total";
pub const RESULTS_OUT: &str = "tidal_results_out_total";
pub const DEAD_LETTERS: &str = "tidal_dead_letters_total";
pub const BATCH_SIZE: &str = "tidal_batch_size";
pub const INFERENCE_SECONDS: &str = "tidal_inference_seconds";
pub const END_TO_END_SECONDS: &str = "tidal_end_to_end_latency_seconds";
pub const TXN_COMMIT_SECONDS: &str = "tidal_transaction_commit_seconds";
pub const TRANSACTIONS: &str = "tidal_transactions_total";
pub const REBALANCES: &str = "tidal_rebalances_total";
pub const CONSUMER_LAG: &str = "tidal_consumer_lag";
pub const WORKER_RESTARTS: &str = "tidal_worker_restarts_total";
pub const WORKERS: &str = "tidal_workers";
pub const PANICS_CAUGHT: &str = "tidal_panics_caught_total";
pub const REFUSED_RECORDS: &str = "tidal_refused_records_total";
pub const WORKER_BLOCKED_SECONDS: &str = "tidal_worker_blocked_seconds";
/// 1 while a worker serves its priority topics first (normal topics paused but for their share).
pub const WORKER_PRIORITY_FIRST: &str = "tidal_worker_priority_first";
pub const GATEWAY_REQUESTS: &str = "tidal_gateway_requests_total";
pub const GATEWAY_SECONDS: &str = "tidal_gateway_seconds";

const SECONDS_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Installs the Prometheus recorder and starts the HTTP listener on `address`: `/metrics`, and
/// `/livez` / `/readyz` from `health` (200 `ok`, or 503 with the reason). Needs a Tokio runtime.
pub fn install_exporter(address: SocketAddr, health: HealthSlot) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Config(format!("metrics endpoint on {address}: {e}"));
    let listener = std::net::TcpListener::bind(address)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| err(&format!("{e} (is the port in use? set metrics.listen / --metrics-listen)")))?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(|e| err(&e))?
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), BATCH_BUCKETS)
        .map_err(|e| err(&e))?
        .install_recorder()
        .map_err(|e| err(&e))?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| err(&e))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let answer = |state: Result<(), String>| match state {
        Ok(()) => (axum::http::StatusCode::OK, "ok\n".to_string()),
        Err(reason) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    };
    let (live, ready) = (health.clone(), health);
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(move || std::future::ready(handle.render())))
        .route("/livez", axum::routing::get(move || std::future::ready(answer(live.live()))))
        .route("/readyz", axum::routing::get(move || std::future::ready(answer(ready.ready()))));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(())
}

pub fn records_in(topic: &str, model: &str, count: usize) {
    counter!(RECORDS_IN, "topic" => topic.to_string(), "model" => model.to_string()).increment(count as u64);
}

pub fn results_out(model: &str, status: &'static str, count: usize) {
    counter!(RESULTS_OUT, "model" => model.to_string(), "status" => status).increment(count as u64);
}

pub fn dead_letter(model: &str, reason: &'static str) {
    counter!(DEAD_LETTERS, "model" => model.to_string(), "reason" => reason).increment(1);
}

/// A panic while decoding or running one request was caught (its request was dead-lettered).
pub fn panic_caught(model: &str, stage: &'static str) {
    counter!(PANICS_CAUGHT, "model" => model.to_string(), "stage" => stage).increment(1);
}

/// The broker refused a record for a reason of its own (`reason`: librdkafka's error name).
pub fn refused_record(reason: String) {
    counter!(REFUSED_RECORDS, "reason" => reason).increment(1);
}

pub fn batch(model: &str, size: usize, inference: Duration) {
    histogram!(BATCH_SIZE, "model" => model.to_string()).record(size as f64);
    histogram!(INFERENCE_SECONDS, "model" => model.to_string()).record(inference.as_secs_f64());
}

pub fn end_to_end(model: &str, latencies: impl Iterator<Item = Duration>) {
    let mut latencies = latencies.peekable();
    if latencies.peek().is_some() {
        let histogram = histogram!(END_TO_END_SECONDS, "model" => model.to_string());
        latencies.for_each(|latency| histogram.record(latency.as_secs_f64()));
    }
}

pub fn transaction(outcome: &'static str, took: Duration) {
    counter!(TRANSACTIONS, "outcome" => outcome).increment(1);
    if outcome == "committed" {
        histogram!(TXN_COMMIT_SECONDS).record(took.as_secs_f64());
    }
}

pub fn rebalance(kind: &'static str) {
    counter!(REBALANCES, "kind" => kind).increment(1);
}

pub fn consumer_lag(topic: &str, partition: i32, lag: i64) {
    gauge!(CONSUMER_LAG, "topic" => topic.to_string(), "partition" => partition.to_string()).set(lag as f64);
}

pub fn worker_restart(reason: &'static str) {
    counter!(WORKER_RESTARTS, "reason" => reason).increment(1);
}

/// How long a worker's current blocking Kafka call has run (0 when none runs).
pub fn worker_blocked(worker: usize, elapsed: Duration) {
    gauge!(WORKER_BLOCKED_SECONDS, "worker" => worker.to_string()).set(elapsed.as_secs_f64());
}

/// Whether a worker is serving its priority topics first.
pub fn worker_priority_first(worker: usize, on: bool) {
    gauge!(WORKER_PRIORITY_FIRST, "worker" => worker.to_string()).set(if on { 1.0 } else { 0.0 });
}

pub fn workers(count: usize) {
    gauge!(WORKERS).set(count as f64);
}

/// One gateway request of `tenant` ended with `outcome` after `took`.
pub fn gateway_request(model: &str, tenant: &str, outcome: &'static str, took: Duration) {
    counter!(GATEWAY_REQUESTS, "model" => model.to_string(), "tenant" => tenant.to_string(), "outcome" => outcome)
        .increment(1);
    histogram!(GATEWAY_SECONDS, "model" => model.to_string()).record(took.as_secs_f64());
}
