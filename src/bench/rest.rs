//! Load on the REST baseline, as its clients would apply it: closed loop (a few clients each
//! waiting for their answer) to find its capacity, then open loop at a fixed rate with a timeout
//! per attempt and retries with backoff, counting what finally succeeded or failed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::corpus;
use super::measure::{self, RunResult};
use crate::error::{Error, Result};

/// Timeouts and retries of an open-loop client.
#[derive(Debug, Clone, Copy)]
pub struct ClientPolicy {
    /// Per attempt.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// Backoff before retry k is `backoff × 2^k`.
    pub backoff: Duration,
}

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder().build().map_err(|e| Error::Bench(format!("cannot build the HTTP client: {e}")))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::Bench(format!("cannot start a Tokio runtime: {e}")))
}

/// One POST; true if it answered 200 with this request's id within `timeout`.
async fn attempt(client: &reqwest::Client, url: &str, seq: u64, timeout: Duration) -> bool {
    let call = async {
        let response =
            client.post(url).header("content-type", "application/json").body(corpus::request(seq)).send().await?;
        let ok = response.status().is_success();
        let body = response.bytes().await?;
        Ok::<bool, reqwest::Error>(ok && corpus::seq_of_result(&body) == Some(seq))
    };
    matches!(tokio::time::timeout(timeout, call).await, Ok(Ok(true)))
}

/// The `model_version` the server answers one request with: the bench compares models, so a
/// server loaded with other model files must not be measured.
pub fn model_version(url: &str) -> Result<String> {
    let http = client()?;
    runtime()?.block_on(async {
        let call = async {
            let response =
                http.post(url).header("content-type", "application/json").body(corpus::request(0)).send().await?;
            response.bytes().await
        };
        let body = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .map_err(|_| Error::Bench(format!("{url} did not answer a request within 30 s")))?
            .map_err(|e| Error::Bench(format!("{url} did not answer a request: {e}")))?;
        corpus::version_of_result(&body).ok_or_else(|| {
            Error::Bench(format!("{url} answered without a model_version: {}", String::from_utf8_lossy(&body)))
        })
    })
}

/// `clients` concurrent callers, each sending its next request when the last one is answered,
/// for `duration`: the server's capacity.
pub fn closed_loop(url: &str, clients: usize, duration: Duration, progress: &ProgressBar) -> Result<RunResult> {
    let http = client()?;
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let done: Arc<Mutex<Vec<(f64, f64)>>> = Arc::default();
    let errors = Arc::new(AtomicU64::new(0));
    runtime()?.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (http, url, next, done, errors) =
                    (http.clone(), url.to_string(), Arc::clone(&next), Arc::clone(&done), Arc::clone(&errors));
                tokio::spawn(async move {
                    while start.elapsed() < duration {
                        let seq = next.fetch_add(1, Ordering::SeqCst);
                        let sent = Instant::now();
                        if attempt(&http, &url, seq, Duration::from_secs(30)).await {
                            let finished = start.elapsed().as_secs_f64();
                            done.lock().map(|mut d| d.push((finished, sent.elapsed().as_secs_f64() * 1e3))).ok();
                        } else {
                            errors.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        while start.elapsed() < duration {
            progress.set_position(start.elapsed().as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for task in tasks {
            let _ = task.await;
        }
    });
    let done = done.lock().map(|d| d.clone()).unwrap_or_default();
    let offsets: Vec<f64> = done.iter().map(|d| d.0).collect();
    Ok(RunResult {
        name: format!("REST closed loop, {clients} clients"),
        requests: next.load(Ordering::SeqCst),
        results: done.len() as u64,
        errors: errors.load(Ordering::SeqCst),
        throughput: done.len() as f64 / start.elapsed().as_secs_f64(),
        latency_ms: measure::percentiles(done.iter().map(|d| d.1).collect()),
        per_second: measure::per_second(&offsets),
        ..RunResult::default()
    })
}

/// Requests arrive at `rate` for `duration`, whatever the server does; each client retries on
/// timeout or error as `policy` says. Successful throughput counts requests answered within the
/// run (plus the time their retries may take).
pub fn open_loop(
    url: &str,
    rate: f64,
    duration: Duration,
    policy: ClientPolicy,
    first_seq: u64,
    progress: &ProgressBar,
) -> Result<RunResult> {
    let http = client()?;
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let done: Arc<Mutex<Vec<(f64, f64)>>> = Arc::default();
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    runtime()?.block_on(async {
        let mut tasks = Vec::with_capacity(total as usize);
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            let (http, url, done, errors) = (http.clone(), url.to_string(), Arc::clone(&done), Arc::clone(&errors));
            tasks.push(tokio::spawn(async move {
                let seq = first_seq + i;
                for k in 0..=policy.retries {
                    if k > 0 {
                        tokio::time::sleep(policy.backoff * 2u32.pow(k - 1)).await;
                    }
                    if attempt(&http, &url, seq, policy.timeout).await {
                        let finished = start.elapsed().as_secs_f64();
                        done.lock().map(|mut d| d.push((finished, due.elapsed().as_secs_f64() * 1e3))).ok();
                        return;
                    }
                }
                errors.fetch_add(1, Ordering::SeqCst);
            }));
            progress.set_position(start.elapsed().as_millis() as u64);
        }
        for task in tasks {
            let _ = task.await;
        }
    });
    let done = done.lock().map(|d| d.clone()).unwrap_or_default();
    let offsets: Vec<f64> = done.iter().map(|d| d.0).collect();
    let span = start.elapsed().as_secs_f64();
    Ok(RunResult {
        name: format!("REST open loop {rate:.0}/s"),
        offered: Some(rate),
        requests: total,
        results: done.len() as u64,
        errors: errors.load(Ordering::SeqCst),
        throughput: done.len() as f64 / span,
        latency_ms: measure::percentiles(done.iter().map(|d| d.1).collect()),
        per_second: measure::per_second(&offsets),
        ..RunResult::default()
    })
}
