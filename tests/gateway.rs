//! `tidal gateway` against the real broker and processor: answers through the stream exactly once,
//! idempotent retries, timeouts, API keys and tenants, per-tenant rates (429) and the in-flight
//! caps (503) while Kafka is frozen.
#![cfg(feature = "broker-tests")]

mod common;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{tidal, Fixture, OwnBroker, Reader, Server, LABELLED};

/// Starts `tidal gateway` for the fixture's sentiment topics and waits until `/health` answers.
fn start_gateway(fx: &Fixture, port: u16, timeout: &str) -> Server {
    start_gateway_with(fx, port, &["--timeout", timeout, "--metrics-listen", "", "--model", "sentiment"])
}

/// Starts `tidal gateway` with `args` (and the fixture's config) and waits until `/health` answers.
fn start_gateway_with(fx: &Fixture, port: u16, args: &[&str]) -> Server {
    let child = tidal()
        .args(["gateway", "--config"])
        .arg(&fx.config_path)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("start tidal gateway");
    let server = Server(child);
    wait_healthy(&runtime(), port);
    server
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn post(port: u16, path: &str, body: String) -> (u16, serde_json::Value) {
    let call = call(port, path, None, body).await;
    (call.status, call.body)
}

/// What a call got back.
struct Answered {
    status: u16,
    body: serde_json::Value,
    retry_after: Option<u64>,
    took: Duration,
}

/// POSTs `body` with an optional API key.
async fn call(port: u16, path: &str, key: Option<&str>, body: String) -> Answered {
    let started = Instant::now();
    let mut request = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("gateway reachable");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("gateway answered non-JSON {text:?}: {e}"));
    Answered { status, body, retry_after, took: started.elapsed() }
}

#[test]
fn gateway_answers_through_the_stream_exactly_once() {
    let fx = Fixture::new("gateway", 2, "");
    let _server = fx.spawn("a");
    let port = common::free_port();
    let _gateway = start_gateway(&fx, port, "60s");

    // 24 concurrent callers, ids given by some, made by the gateway for the others.
    let answers = runtime().block_on(async {
        let calls = (0..24).map(|i| {
            let (text, label) = LABELLED[i % LABELLED.len()];
            let body = if i % 2 == 0 {
                serde_json::json!({"id": format!("g{i}"), "text": text})
            } else {
                serde_json::json!({"text": text})
            };
            async move { (label, post(port, "/v1/models/sentiment", body.to_string()).await) }
        });
        futures_join_all(calls).await
    });
    let mut ids = HashSet::new();
    for (i, (label, (status, body))) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "call {i}: {body}");
        common::assert_matches_schema(body, "sentiment.result");
        assert_eq!(body["result"]["label"], *label, "call {i}: {body}");
        if i % 2 == 0 {
            assert_eq!(body["id"], format!("g{i}"), "the caller's id is kept");
        }
        assert!(ids.insert(body["id"].as_str().unwrap().to_string()), "each caller gets its own result");
    }

    // The results went through the topic, once each.
    let mut committed = Reader::new(&fx.results(), true);
    committed.read_until(24, Duration::from_secs(30));
    committed.poll_for(Duration::from_secs(1));
    let seen: Vec<String> = committed.records.iter().map(|r| r.json()["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(seen.len(), 24, "one committed result per call: {seen:?}");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), ids);

    let rt = runtime();
    // Bad input: the processor dead-letters it and the gateway says why.
    let (status, body) = rt.block_on(post(port, "/v1/models/sentiment", r#"{"id": "bad-1"}"#.into()));
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["kind"], "missing_field", "{body}");
    // Refused before Kafka: not an object, unknown model.
    let (status, body) = rt.block_on(post(port, "/v1/models/sentiment", "[1, 2]".into()));
    assert_eq!(status, 400, "{body}");
    let (status, body) = rt.block_on(post(port, "/v1/models/nope", "{}".into()));
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["reason"].as_str().unwrap().contains("sentiment"), "names what it serves: {body}");
}

#[test]
fn gateway_retries_with_the_same_id_run_the_model_once() {
    let fx = Fixture::new("gateway-retry", 1, "");
    let port = common::free_port();
    let _gateway = start_gateway(&fx, port, "60s");
    let body = r#"{"id": "retry-1", "text": "An absolute masterpiece, moving and beautifully acted."}"#.to_string();
    // Threads of its own: the spawned calls run while this thread sleeps.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Three calls with the same id and body while no processor runs: the first produces the
    // request, the two retries join it; a processor started later answers all three.
    let calls = rt.spawn({
        let body = body.clone();
        async move {
            let calls = (0..3).map(|_| post(port, "/v1/models/sentiment", body.clone()));
            futures_join_all(calls).await
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    // The same id with another body is someone else's request: refused while the first waits.
    let other = r#"{"id": "retry-1", "text": "something else"}"#.to_string();
    let (status, answer) = rt.block_on(post(port, "/v1/models/sentiment", other.clone()));
    assert_eq!(status, 409, "{answer}");
    let _server = fx.spawn("a");
    let answers = rt.block_on(calls).unwrap();
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
        assert_eq!(answer["result"]["label"], "positive", "{answer}");
    }
    // A retry after the answer gets it again, without a new request.
    let (status, again) = rt.block_on(post(port, "/v1/models/sentiment", body));
    assert_eq!((status, &again), (200, &answers[0].1), "the kept answer");
    let (status, _) = rt.block_on(post(port, "/v1/models/sentiment", other));
    assert_eq!(status, 409, "another body under an answered id");
    let mut requests = Reader::new(&fx.requests(), false);
    requests.read_until(2, Duration::from_secs(5));
    assert_eq!(requests.records.len(), 1, "one request in the stream for four calls");
    let mut results = Reader::new(&fx.results(), true);
    results.read_until(2, Duration::from_secs(10));
    assert_eq!(results.records.len(), 1, "the model ran once");
}

#[test]
fn gateway_times_out_when_no_processor_answers() {
    let fx = Fixture::new("gateway-timeout", 1, "");
    let port = common::free_port();
    let _gateway = start_gateway(&fx, port, "60s");
    let started = Instant::now();
    let body = r#"{"id": "late-1", "text": "nobody is serving"}"#.to_string();
    let (status, answer) = runtime().block_on(post(port, "/v1/models/sentiment?timeout_ms=1500", body));
    assert_eq!(status, 504, "{answer}");
    assert_eq!(answer["id"], "late-1");
    assert!(started.elapsed() < Duration::from_secs(20), "the client's timeout_ms applies");

    // The request stayed in the stream with its deadline: a processor started later answers it
    // "expired" without running the model.
    let _server = fx.spawn("a");
    let mut committed = Reader::new(&fx.results(), true);
    committed.read_until(1, Duration::from_secs(60));
    let result = committed.records[0].json();
    assert_eq!(result["id"], "late-1");
    assert_eq!(result["status"], "expired", "{result}");
    common::assert_matches_schema(&result, "sentiment.result");
}

/// `join_all` without another dependency: polls every future on the current-thread runtime.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("call task"));
    }
    out
}

/// Runs `tidal api-key` and returns the key and the tenants-file entry it printed.
fn api_key(tenant: &str, models: &str, rate: Option<f64>) -> (String, String) {
    let rate = rate.map(|r| r.to_string());
    let mut args = vec!["--model", models];
    if let Some(rate) = &rate {
        args.extend(["--rate", rate.as_str()]);
    }
    api_key_with(tenant, &args)
}

/// Runs `tidal api-key --tenant <tenant> <args>`: the key and the tenants-file entry it printed.
fn api_key_with(tenant: &str, args: &[&str]) -> (String, String) {
    let output = tidal().args(["api-key", "--tenant", tenant]).args(args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let entry = String::from_utf8(output.stdout).unwrap();
    let key = entry
        .lines()
        .find_map(|line| line.trim_start_matches('#').trim().strip_prefix("tdl_").map(|rest| format!("tdl_{rest}")))
        .unwrap_or_else(|| panic!("no key printed: {entry}"));
    (key, entry)
}

/// Writes a tenants file of `entries` (as `tidal api-key` printed them) into the fixture's folder.
fn tenants_file(fx: &Fixture, entries: &[&str]) -> String {
    let path = fx.dir.path().join("tenants.toml");
    std::fs::write(&path, entries.join("\n")).unwrap();
    path.to_string_lossy().into_owned()
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn api_keys_decide_who_calls_which_model_and_the_tenant_travels_with_the_request() {
    let fx = Fixture::new("gateway-keys", 1, "");
    for topic in ["requests", "results"] {
        fx.create_topic(&format!("{}.{topic}.ocr", fx.prefix), 1);
    }
    let (search_key, search) = api_key("search", "sentiment", None);
    let (vision_key, vision) = api_key("vision", "ocr", None);
    let tenants = tenants_file(&fx, &[&search, &vision]);
    let _server = fx.spawn("a");
    let (port, metrics_port) = (common::free_port(), common::free_port());
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let log_path = fx.dir.path().join("gateway.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = tidal()
        .env("TIDAL_LOG", "debug")
        .args(["gateway", "--config"])
        .arg(&fx.config_path)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--metrics-listen", &metrics_listen])
        .args(["--model", "sentiment,ocr", "--tenants", &tenants, "--timeout", "60s"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _gateway = Server(child);
    let rt = runtime();
    wait_healthy(&rt, port);

    let text = || serde_json::json!({"text": LABELLED[0].0}).to_string();
    let path = "/v1/models/sentiment";
    let none = rt.block_on(call(port, path, None, text()));
    assert_eq!(none.status, 401, "{}", none.body);
    assert!(none.body["error"]["reason"].as_str().unwrap().contains("Authorization: Bearer"), "{}", none.body);
    let wrong = rt.block_on(call(port, path, Some("tdl_0123"), text()));
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let other_model = rt.block_on(call(port, path, Some(&vision_key), text()));
    assert_eq!(other_model.status, 403, "{}", other_model.body);
    assert!(other_model.body["error"]["reason"].as_str().unwrap().contains("'vision'"), "{}", other_model.body);
    let granted = rt.block_on(call(port, path, Some(&search_key), text()));
    assert_eq!(granted.status, 200, "{}", granted.body);
    assert_eq!(granted.body["result"]["label"], LABELLED[0].1);

    // Only the granted call reached the stream, with its tenant.
    let mut requests = Reader::new(&fx.requests(), false);
    requests.read_until(2, Duration::from_secs(5));
    assert_eq!(requests.records.len(), 1, "refused calls produce nothing");
    assert_eq!(requests.records[0].headers.get("tidal-tenant").map(String::as_str), Some("search"));

    let metrics = rt.block_on(async {
        reqwest::get(format!("http://{metrics_listen}/metrics")).await.unwrap().text().await.unwrap()
    });
    let count = |labels: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("tidal_gateway_requests_total{") && labels.split(',').all(|p| l.contains(p)))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(count(r#"tenant="search",outcome="ok""#), Some(1.0), "{metrics}");
    assert_eq!(count(r#"tenant="vision",outcome="forbidden""#), Some(1.0), "{metrics}");
    assert_eq!(count(r#"tenant="-",outcome="unauthorized""#), Some(2.0), "{metrics}");
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(logged.contains("gateway listening"), "the log was captured: {logged}");
    for key in [&search_key, &vision_key] {
        assert!(!logged.contains(key.as_str()), "a key was logged");
    }
}

fn wait_healthy(rt: &tokio::runtime::Runtime, port: u16) {
    let healthy = rt.block_on(async {
        for _ in 0..120 {
            if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/health")).await {
                if response.status().is_success() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    });
    assert!(healthy, "the gateway did not become healthy within 30 s");
}

/// `count` calls of `tenant`, one every `every`, all in flight together; what each got.
async fn paced_calls(port: u16, key: String, count: usize, every: Duration) -> Vec<Answered> {
    let handles: Vec<_> = (0..count)
        .map(|i| {
            let key = key.clone();
            tokio::spawn(async move {
                tokio::time::sleep(every * i as u32).await;
                let body = serde_json::json!({"text": LABELLED[i % LABELLED.len()].0}).to_string();
                call(port, "/v1/models/sentiment", Some(&key), body).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("call task"));
    }
    out
}

fn p95(answers: &[Answered]) -> f64 {
    let mut took: Vec<f64> = answers.iter().map(|a| a.took.as_secs_f64() * 1000.0).collect();
    took.sort_by(f64::total_cmp);
    took[((took.len() as f64 * 0.95).ceil() as usize).clamp(1, took.len()) - 1]
}

#[test]
fn a_tenant_over_its_rate_gets_429_and_the_others_keep_their_answers() {
    let fx = Fixture::new("gateway-rate", 2, "");
    let (greedy_key, greedy) = api_key("greedy", "*", Some(2.0)); // burst 4
    let (calm_key, calm) = api_key("calm", "*", Some(50.0));
    let tenants = tenants_file(&fx, &[&greedy, &calm]);
    let _server = fx.spawn("a");
    let port = common::free_port();
    let _gateway = start_gateway_with(
        &fx,
        port,
        &["--timeout", "60s", "--metrics-listen", "", "--model", "sentiment", "--tenants", &tenants],
    );
    let rt = multi_thread_runtime();
    // Warm-up, then the calm tenant alone: 20 calls at 10/s.
    rt.block_on(paced_calls(port, calm_key.clone(), 3, Duration::from_millis(300)));
    let alone = rt.block_on(paced_calls(port, calm_key.clone(), 20, Duration::from_millis(100)));
    // The same calm traffic while the greedy tenant sends 150 calls at 50/s.
    let started = Instant::now();
    let (greedy_answers, calm_answers) = rt.block_on(async {
        let greedy = tokio::spawn(paced_calls(port, greedy_key, 150, Duration::from_millis(20)));
        let calm = paced_calls(port, calm_key, 20, Duration::from_millis(100)).await;
        (greedy.await.unwrap(), calm)
    });
    let window = started.elapsed().as_secs_f64();
    let served = greedy_answers.iter().filter(|a| a.status == 200).count();
    let limited: Vec<&Answered> = greedy_answers.iter().filter(|a| a.status == 429).collect();
    eprintln!(
        "rate: greedy 150 calls at 50/s (quota 2/s, burst 4) -> {served} answered, {} refused 429 in {window:.1} s; \
         calm p95 {:.0} ms alone, {:.0} ms beside greedy",
        limited.len(),
        p95(&alone),
        p95(&calm_answers)
    );
    assert!(alone.iter().chain(&calm_answers).all(|a| a.status == 200), "the calm tenant is always answered");
    assert_eq!(served + limited.len(), 150, "greedy gets answers or 429s, nothing else");
    // The burst plus the rate over the window it sent in (its calls end by ~3 s), with one to spare.
    assert!((4..=4 + (2.0 * window).ceil() as usize + 1).contains(&served), "{served} answered");
    for refused in &limited {
        assert!(refused.retry_after.is_some_and(|s| s >= 1), "429 with Retry-After: {}", refused.body);
        assert!(refused.body["error"]["reason"].as_str().unwrap().contains("'greedy'"), "{}", refused.body);
    }
}

#[test]
fn while_kafka_is_frozen_calls_end_in_time_and_memory_stays_within_the_caps() {
    const CALLS: usize = 400;
    const BODY: usize = 256 * 1024;
    const MAX_IN_FLIGHT: usize = 64;
    const MAX_BYTES: usize = 8 << 20;
    let broker = OwnBroker::start(19892);
    let fx = Fixture::on_broker("gateway-frozen", &broker.address(), 1, "", "");
    let port = common::free_port();
    let gateway = start_gateway_with(
        &fx,
        port,
        &[
            "--timeout",
            "3s",
            "--metrics-listen",
            "",
            "--model",
            "sentiment",
            "--max-in-flight",
            &MAX_IN_FLIGHT.to_string(),
            "--max-bytes-in-flight",
            &MAX_BYTES.to_string(),
        ],
    );
    let pid = gateway.id();
    let rt = multi_thread_runtime();
    let text = "a".repeat(BODY);
    // One call while Kafka runs: produced, then no processor answers.
    let before = rt.block_on(call(
        port,
        "/v1/models/sentiment?timeout_ms=1000",
        None,
        serde_json::json!({"text": text}).to_string(),
    ));
    assert_eq!(before.status, 504, "{}", before.body);
    let rss_start = common::rss_mib(pid).unwrap();

    broker.control("pause");
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = std::thread::spawn({
        let sampling = sampling.clone();
        move || {
            let mut peak: f64 = 0.0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(common::rss_mib(pid).unwrap_or(0.0));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        }
    });
    let answers = rt.block_on(async {
        let handles: Vec<_> = (0..CALLS)
            .map(|i| {
                let body = serde_json::json!({"id": format!("frozen-{i}"), "text": text}).to_string();
                tokio::spawn(async move { call(port, "/v1/models/sentiment", None, body).await })
            })
            .collect();
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await.expect("call task"));
        }
        out
    });
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    broker.control("resume");

    let timed_out: Vec<&Answered> = answers.iter().filter(|a| a.status == 504).collect();
    let full: Vec<&Answered> = answers.iter().filter(|a| a.status == 503).collect();
    let slowest = answers.iter().map(|a| a.took).max().unwrap();
    let bound = 4.0 * (MAX_BYTES >> 20) as f64 + 32.0;
    eprintln!(
        "frozen Kafka: {CALLS} calls of {} KiB at once -> {} 504 (not written in 3 s), {} 503 (caps {MAX_IN_FLIGHT} \
         requests / {} MiB); slowest answer {:.1} s; RSS {rss_start:.0} -> peak {peak:.0} MiB (growth bound {bound:.0})",
        BODY / 1024,
        timed_out.len(),
        full.len(),
        MAX_BYTES >> 20,
        slowest.as_secs_f64()
    );
    assert_eq!(timed_out.len() + full.len(), CALLS, "only 503 and 504 while Kafka is frozen");
    assert!(slowest < Duration::from_secs(6), "every call ends near its 3 s timeout: {slowest:?}");
    assert!(timed_out.len() <= MAX_IN_FLIGHT, "no more admitted than the caps allow");
    assert!(full.len() >= CALLS - MAX_IN_FLIGHT, "the rest refused at once");
    for answer in &timed_out {
        assert!(answer.body["error"]["reason"].as_str().unwrap().contains("not written"), "{}", answer.body);
    }
    assert!(full.iter().all(|a| a.retry_after == Some(1)), "503 with Retry-After");
    assert!(peak - rss_start <= bound, "RSS grew {:.0} MiB, bound {bound:.0}", peak - rss_start);

    // Kafka back: calls are written again (no processor here, so they time out waiting for it).
    let after = rt.block_on(call(port, "/v1/models/sentiment?timeout_ms=8000", None, r#"{"text": "back"}"#.into()));
    assert_eq!(after.status, 504, "{}", after.body);
    assert!(after.body["error"]["reason"].as_str().unwrap().contains("no result within"), "{}", after.body);
}

/// A CA and a server certificate for 127.0.0.1 signed by it (openssl), in `dir`.
fn tls_files(dir: &std::path::Path) -> (String, String, Vec<u8>) {
    let run = |args: &[&str]| {
        let output = std::process::Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=gateway test CA"]
        .iter()
        .chain(&["-keyout", "ca.key", "-out", "ca.pem"])
        .copied()
        .collect::<Vec<_>>());
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.pem",
        "-extfile",
        "ext.cnf",
    ]);
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    (path("server.pem"), path("server.key"), std::fs::read(dir.join("ca.pem")).unwrap())
}

#[test]
fn https_on_the_listener_and_priority_tenants_take_the_priority_lane() {
    let fx = Fixture::new("gateway-tls", 1, "[priority]\nmodels = [\"sentiment\"]\n");
    let priority_topic = format!("{}.priority", fx.requests());
    fx.create_topic(&priority_topic, 1);
    let (premium_key, premium) = api_key_with("premium", &["--priority"]);
    let (basic_key, basic) = api_key_with("basic", &[]);
    let tenants = tenants_file(&fx, &[&premium, &basic]);
    let (cert, key, ca) = tls_files(fx.dir.path());
    let _server = fx.spawn("a");
    let port = common::free_port();
    let child = tidal()
        .args(["gateway", "--config"])
        .arg(&fx.config_path)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--metrics-listen", "", "--model", "sentiment"])
        .args(["--tenants", &tenants, "--tls-cert", &cert, "--tls-key", &key, "--timeout", "60s"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _gateway = Server(child);
    let client =
        reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap()).build().unwrap();
    let rt = runtime();
    let https = |key: &str, id: &str| {
        let request = client
            .post(format!("https://127.0.0.1:{port}/v1/models/sentiment"))
            .bearer_auth(key)
            .body(serde_json::json!({"id": id, "text": LABELLED[0].0}).to_string());
        async move {
            let response = request.send().await?;
            Ok::<_, reqwest::Error>((response.status().as_u16(), response.json::<serde_json::Value>().await?))
        }
    };
    let until = Instant::now() + Duration::from_secs(30);
    let (status, answer) = loop {
        match rt.block_on(https(&premium_key, "vip-1")) {
            Ok(answered) => break answered,
            Err(e) if Instant::now() < until => {
                eprintln!("gateway not up yet: {e}");
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(e) => panic!("no HTTPS answer within 30 s: {e}"),
        }
    };
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["label"], LABELLED[0].1);
    let (status, answer) = rt.block_on(https(&basic_key, "plain-1")).unwrap();
    assert_eq!(status, 200, "{answer}");
    // Plain HTTP on the HTTPS port gets no answer.
    let plain = rt.block_on(reqwest::Client::new().get(format!("http://127.0.0.1:{port}/health")).send());
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "plain HTTP must not be served");

    // The premium call went through the priority topic, the basic one through the normal one.
    let mut lane = Reader::new(&priority_topic, false);
    lane.read_until(1, Duration::from_secs(10));
    let mut normal = Reader::new(&fx.requests(), false);
    normal.read_until(1, Duration::from_secs(10));
    lane.poll_for(Duration::from_secs(1));
    normal.poll_for(Duration::from_secs(1));
    let ids = |reader: &Reader| {
        reader.records.iter().map(|r| r.json()["id"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&lane), ["vip-1"]);
    assert_eq!(ids(&normal), ["plain-1"]);
    assert_eq!(lane.records[0].headers.get("tidal-tenant").map(String::as_str), Some("premium"));
}

#[test]
fn result_partitions_added_later_are_read() {
    let fx = Fixture::new("gateway-grow", 1, "");
    let port = common::free_port();
    let _gateway = start_gateway(&fx, port, "60s");
    common::add_partitions(&fx.brokers, &fx.results(), 4);
    // No processor: the answer is written straight into partition 3, which did not exist when
    // the gateway started (it looks for new partitions every 10 s and reads them from their start).
    let rt = multi_thread_runtime();
    let waiting = rt.spawn(post(port, "/v1/models/sentiment", r#"{"id": "grown-1", "text": "x"}"#.into()));
    std::thread::sleep(Duration::from_secs(1));
    let answer =
        serde_json::json!({"id": "grown-1", "model": "sentiment", "status": "ok", "result": {"label": "positive"}});
    common::produce_to_partition(&fx.brokers, &fx.results(), 3, "grown-1", &answer.to_string());
    let (status, body) = rt.block_on(waiting).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, answer);
}
