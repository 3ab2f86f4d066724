//! End-to-end throughput through a real broker: N sentiment requests are produced first (a
//! backlog), then the processor starts in-process and the clock runs until a `read_committed`
//! reader has seen all N results. Exactly-once, as in production.
//!
//! Run: scripts/bench-e2e.sh   (starts Kafka; or set TIDAL_BENCH_BROKERS and run
//! `cargo bench --bench end_to_end`). TIDAL_BENCH_REQUESTS (default 5000), TIDAL_BENCH_WORKERS
//! (default CPUs − 1) and TIDAL_BENCH_MAX_BATCH (default 32) tune it.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use tidal::config::ServeConfig;

const TEXTS: &[&str] = &[
    "An absolute masterpiece, moving and beautifully acted.",
    "A boring, clumsy mess that wastes its talented cast.",
    "One of the best films of the year: funny, warm and wise.",
    "Worst two hours of my life. Avoid.",
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Ok(brokers) = std::env::var("TIDAL_BENCH_BROKERS") else {
        eprintln!("end_to_end: TIDAL_BENCH_BROKERS is not set; run scripts/bench-e2e.sh");
        return;
    };
    let requests: usize = env_or("TIDAL_BENCH_REQUESTS", 5000);
    let max_batch: usize = env_or("TIDAL_BENCH_MAX_BATCH", 32);
    let mut config = ServeConfig::default();
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let prefix = format!("bench{nonce}");
    config.app = prefix.clone();
    config.kafka.brokers = brokers.clone();
    config.workers = env_or("TIDAL_BENCH_WORKERS", 0);
    config.batch.max_batch = max_batch;
    config.metrics.listen = String::new();
    config.topics.request_prefix = format!("{prefix}.requests.");
    config.topics.result_prefix = format!("{prefix}.results.");
    config.topics.dead_letter = format!("{prefix}.dlq");
    let (req_topic, res_topic, dlq) =
        (format!("{prefix}.requests.sentiment"), format!("{prefix}.results.sentiment"), format!("{prefix}.dlq"));

    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("admin client");
    let topics: Vec<NewTopic<'_>> = [&req_topic, &res_topic, &dlq]
        .iter()
        .map(|t| NewTopic::new(t.as_str(), 4, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(admin.create_topics(&topics, &AdminOptions::new())).expect("create topics");

    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    for i in 0..requests {
        let value = serde_json::json!({"id": format!("b{i}"), "text": TEXTS[i % TEXTS.len()]}).to_string();
        let key = format!("b{i}");
        let mut record = BaseRecord::to(&req_topic).key(&key).payload(&value);
        while let Err((_, r)) = producer.send(record) {
            producer.poll(Duration::from_millis(5));
            record = r;
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");

    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{prefix}-reader"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    reader.subscribe(&[&res_topic]).unwrap();

    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().expect("metrics recorder");
    let workers = config.worker_count();
    let handle = tidal::worker::serve(config).expect("start the processor");
    let mut seen = 0usize;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(900);
    while seen < requests && Instant::now() < deadline {
        if let Some(Ok(_)) = reader.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            seen += 1;
        }
    }
    let elapsed = first.map(|f| f.elapsed()).unwrap_or_default();
    handle.stop();
    let _ = handle.wait(Duration::from_secs(30));
    // Where the time went, from tidal's own histograms.
    let rendered = recorder.render();
    let stat = |name: &str| {
        rendered
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (inference, batches) = (stat("tidal_inference_seconds_sum"), stat("tidal_inference_seconds_count"));
    let (commit, txns) = (stat("tidal_transaction_commit_seconds_sum"), stat("tidal_transaction_commit_seconds_count"));
    println!(
        "end_to_end: {batches} model runs, mean {:.1} ms; {txns} transactions, mean produce+commit {:.1} ms",
        1e3 * inference / batches.max(1.0),
        1e3 * commit / txns.max(1.0)
    );
    println!(
        "end_to_end: {seen}/{requests} results (exactly-once, read_committed), {workers} worker(s), max_batch {max_batch}: \
         {:.1} s from first to last result = {:.0} requests/s",
        elapsed.as_secs_f64(),
        seen.saturating_sub(1) as f64 / elapsed.as_secs_f64().max(1e-9)
    );
}
