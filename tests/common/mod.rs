//! Shared set-up of the integration tests: a real Kafka broker (started by scripts/test.sh, its
//! address in TIDAL_TEST_BROKERS), topics and consumer groups unique to each test, the `tidal`
//! binary as a child process, and readers that keep what they saw.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use rdkafka::{Offset, TopicPartitionList};

/// The broker's address; the tests that need it (feature `broker-tests`) run by scripts/test.sh.
pub fn brokers() -> String {
    std::env::var("TIDAL_TEST_BROKERS")
        .expect("TIDAL_TEST_BROKERS is not set: run the integration tests with scripts/test.sh, which starts Kafka")
}

/// The `tidal` binary, colours off and warnings only (a test sets `TIDAL_LOG` to see more).
pub fn tidal() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidal"));
    command.env("NO_COLOR", "1").env("TIDAL_LOG", "warn");
    command
}

/// A path in the repository.
pub fn repo(path: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A broker of the test's own (scripts/kafka.sh on `port`, any mode its environment selects),
/// stopped when dropped.
pub struct OwnBroker {
    pub port: u16,
}

impl OwnBroker {
    pub fn start(port: u16) -> OwnBroker {
        OwnBroker::start_with(port, &[])
    }

    /// Starts it with scripts/kafka.sh's mode variables (e.g. `TIDAL_KAFKA_SASL_USERS`).
    pub fn start_with(port: u16, env: &[(&str, &str)]) -> OwnBroker {
        let broker = OwnBroker { port };
        let _ = broker.run("stop", &[]); // a broker left by an interrupted run
        assert!(broker.run("start", env), "the broker on {port} did not start ({env:?})");
        broker
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs `scripts/kafka.sh <action> <port>` (restart, pause, resume, ...) and asserts it worked.
    pub fn control(&self, action: &str) {
        assert!(self.run(action, &[]), "kafka.sh {action} {} failed", self.port);
    }

    fn run(&self, action: &str, env: &[(&str, &str)]) -> bool {
        Command::new("bash")
            .arg(repo("scripts/kafka.sh"))
            .args([action, &self.port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .status()
            .expect("run scripts/kafka.sh")
            .success()
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.run("stop", &[]);
    }
}

/// A scaler configuration watching `group` on `topic` every second, without a metrics endpoint
/// unless `watch_extra` sets one; `rest` holds the `[policies]` and `[actuator]` tables.
pub fn scale_toml(group: &str, topic: &str, watch_extra: &str, rest: &str) -> String {
    let metrics = if watch_extra.contains("metrics_listen") { "" } else { "metrics_listen = \"\"\n" };
    format!("[watch]\ngroup = \"{group}\"\ntopics = [\"{topic}\"]\ninterval = \"1s\"\n{metrics}{watch_extra}\n{rest}")
}

/// A record as read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<String>,
    pub value: Option<Vec<u8>>,
    pub headers: HashMap<String, String>,
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp (ms since the epoch; a result's is when its worker produced it).
    pub timestamp_ms: Option<i64>,
}

impl Record {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.value.as_deref().unwrap_or_default()).expect("result is JSON")
    }
}

/// A request record to produce: key, value, headers.
pub type OutgoingRecord<'a> = (Option<String>, Option<Vec<u8>>, Vec<(&'a str, String)>);

/// A `tidal serve` child process, killed when dropped: a failing test must not leave processors
/// running (they would hold the test's stderr open and keep consuming).
pub struct Server(pub Child);

impl std::ops::Deref for Server {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Topics, group and config of one test.
pub struct Fixture {
    pub prefix: String,
    /// The broker this fixture's topics live on.
    pub brokers: String,
    pub model: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Fixture {
    /// A sentiment fixture (see [`Fixture::for_model`]).
    pub fn new(name: &str, partitions: i32, extra: &str) -> Fixture {
        Fixture::for_model(name, "sentiment", partitions, extra)
    }

    /// Creates `<prefix>.requests.<model>`, `<prefix>.results.<model>` and `<prefix>.dlq`, and
    /// writes a config file serving only `model`, with `extra` TOML appended.
    pub fn for_model(name: &str, model: &str, partitions: i32, extra: &str) -> Fixture {
        Fixture::create(name, model, partitions, extra, &brokers(), "", 1)
    }

    /// A sentiment fixture on another broker (e.g. one a test starts, stops and pauses), with
    /// more `[kafka]` keys (e.g. a short `transaction_timeout`).
    pub fn on_broker(name: &str, brokers: &str, partitions: i32, kafka_extra: &str, extra: &str) -> Fixture {
        Fixture::create(name, "sentiment", partitions, extra, brokers, kafka_extra, 1)
    }

    /// A sentiment fixture on a replicated cluster: topics at `replication`.
    pub fn on_cluster(name: &str, brokers: &str, partitions: i32, replication: i32, kafka_extra: &str) -> Fixture {
        Fixture::create(name, "sentiment", partitions, "", brokers, kafka_extra, replication)
    }

    fn create(
        name: &str,
        model: &str,
        partitions: i32,
        extra: &str,
        brokers: &str,
        kafka_extra: &str,
        replication: i32,
    ) -> Fixture {
        let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
        let prefix = format!("t{nonce}-{name}");
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client");
        let names =
            [format!("{prefix}.requests.{model}"), format!("{prefix}.results.{model}"), format!("{prefix}.dlq")];
        let new_topics: Vec<NewTopic<'_>> = names
            .iter()
            .zip([partitions, partitions, 1])
            .map(|(n, p)| {
                NewTopic::new(n, p, TopicReplication::Fixed(replication)).set("max.message.bytes", "12582912")
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for result in runtime.block_on(admin.create_topics(&new_topics, &AdminOptions::new())).expect("create topics") {
            result.expect("topic created");
        }
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("tidal.toml");
        let mut file = std::fs::File::create(&config_path).unwrap();
        write!(
            file,
            "app = \"{prefix}\"\nworkers = 1\nmodels = [\"{model}\"]\n\n[kafka]\nbrokers = \"{brokers}\"\nsession_timeout = \"6s\"\n{kafka_extra}\n\n\
             [topics]\nrequest_prefix = \"{prefix}.requests.\"\nresult_prefix = \"{prefix}.results.\"\n\
             dead_letter = \"{prefix}.dlq\"\n\n[metrics]\nlisten = \"\"\n\n{extra}\n",
        )
        .unwrap();
        Fixture { prefix, brokers: brokers.to_string(), model: model.to_string(), dir, config_path }
    }

    /// Creates one more topic for this test.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &self.brokers).create().expect("admin client");
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for result in runtime.block_on(admin.create_topics(&[topic], &AdminOptions::new())).expect("create topic") {
            result.expect("topic created");
        }
    }

    /// Sets one config of a topic of this test (e.g. a result topic's `max.message.bytes`).
    pub fn set_topic_config(&self, topic: &str, key: &str, value: &str) {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &self.brokers).create().expect("admin client");
        let change = rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic(topic)).set(key, value);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for result in runtime.block_on(admin.alter_configs(&[change], &AdminOptions::new())).expect("alter configs") {
            result.expect("topic config altered");
        }
    }

    pub fn requests(&self) -> String {
        format!("{}.requests.{}", self.prefix, self.model)
    }
    pub fn results(&self) -> String {
        format!("{}.results.{}", self.prefix, self.model)
    }
    pub fn dlq(&self) -> String {
        format!("{}.dlq", self.prefix)
    }

    /// Starts `tidal serve` with this fixture's config.
    pub fn spawn(&self, instance: &str) -> Server {
        let child = tidal()
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .args(["--instance", instance])
            .env("TIDAL_LOG", "info,librdkafka=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tidal serve");
        Server(child)
    }

    /// Rewrites the fixture's `tidal serve` configuration with `edit`.
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let config = std::fs::read_to_string(&self.config_path).expect("read the fixture's config");
        std::fs::write(&self.config_path, edit(config)).expect("write the fixture's config");
    }

    /// Serves with `workers` worker threads (the fixture's default is 1).
    pub fn set_workers(&self, workers: usize) {
        self.edit_config(|c| {
            assert!(c.contains("workers = 1\n"), "the fixture's config has no 'workers = 1':\n{c}");
            c.replace("workers = 1\n", &format!("workers = {workers}\n"))
        });
    }

    /// Starts `tidal serve` with its log (stderr) in a file of the fixture's folder.
    pub fn spawn_logged(&self, instance: &str, log_name: &str) -> (Server, PathBuf) {
        let log = self.dir.path().join(log_name);
        let child = tidal()
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .args(["--instance", instance])
            .env("TIDAL_LOG", "info,librdkafka=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start tidal serve");
        (Server(child), log)
    }

    /// Starts `tidal scale run` on this fixture's broker with `scale_toml`, its log in a file.
    pub fn spawn_scaler(&self, scale_toml: &str) -> (Server, PathBuf) {
        let path = self.dir.path().join("scale.toml");
        std::fs::write(&path, scale_toml).unwrap();
        let log = self.dir.path().join("scale.log");
        let child = tidal()
            .args(["scale", "run", "--brokers", &self.brokers, "--config"])
            .arg(&path)
            .env("TIDAL_LOG", "info,librdkafka=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start tidal scale run");
        (Server(child), log)
    }

    /// Produces (key, value) pairs to the request topic and waits for delivery.
    pub fn produce(&self, records: &[(Option<String>, Option<Vec<u8>>)]) {
        let with_headers: Vec<_> = records.iter().map(|(k, v)| (k.clone(), v.clone(), Vec::new())).collect();
        self.produce_with_headers(&with_headers);
    }

    /// Produces (key, value, headers) records to the request topic and waits for delivery.
    pub fn produce_with_headers(&self, records: &[OutgoingRecord<'_>]) {
        self.produce_with_headers_to(&self.requests(), records);
    }

    /// Produces (key, value, headers) records to `topic` and waits for delivery.
    pub fn produce_with_headers_to(&self, topic: &str, records: &[OutgoingRecord<'_>]) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .set("message.max.bytes", "16777216")
            .create()
            .unwrap();
        for (key, value, headers) in records {
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
            if !headers.is_empty() {
                let mut owned = rdkafka::message::OwnedHeaders::new();
                for (k, v) in headers {
                    owned = owned.insert(rdkafka::message::Header { key: k, value: Some(v.as_bytes()) });
                }
                record = record.headers(owned);
            }
            if let Some(k) = key {
                record = record.key(k.as_bytes());
            }
            if let Some(v) = value {
                record = record.payload(v.as_slice());
            }
            while let Err((_, returned)) = producer.send(record) {
                producer.poll(Duration::from_millis(10));
                record = returned;
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush requests");
    }

    /// Produces JSON sentiment requests with ids as keys.
    pub fn produce_texts(&self, requests: &[(String, String)]) {
        self.produce_texts_to(&self.requests(), requests);
    }

    /// Produces JSON sentiment requests with ids as keys to `topic`.
    pub fn produce_texts_to(&self, topic: &str, requests: &[(String, String)]) {
        let records: Vec<_> = requests
            .iter()
            .map(|(id, text)| {
                let value = serde_json::json!({"id": id, "text": text}).to_string().into_bytes();
                (Some(id.clone()), Some(value), Vec::new())
            })
            .collect();
        self.produce_with_headers_to(topic, &records);
    }
}

/// Produces raw image records (`content-type` and `id` headers, the id as key) to `topic`, as
/// clients that skip base64 send them, and waits for delivery.
pub fn produce_raw_images(brokers: &str, topic: &str, content_type: &str, images: &[(String, &[u8])]) {
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("message.max.bytes", "16777216").create().unwrap();
    for (id, bytes) in images {
        let headers = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header { key: "content-type", value: Some(content_type) })
            .insert(rdkafka::message::Header { key: "id", value: Some(id.as_str()) });
        let mut record: BaseRecord<'_, str, [u8]> =
            BaseRecord::to(topic).key(id.as_str()).payload(*bytes).headers(headers);
        while let Err((_, returned)) = producer.send(record) {
            producer.poll(Duration::from_millis(10));
            record = returned;
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush images");
}

/// A consumer that accumulates everything it reads from one topic.
pub struct Reader {
    consumer: BaseConsumer,
    pub records: Vec<Record>,
}

/// A number unique to each reader of this test process.
fn next_reader() -> usize {
    static READERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    READERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A reader's client: its own group id (two readers of one topic must each see every record),
/// no offset commits, the isolation level asked for.
fn reader_config(brokers: &str, topic: &str, read_committed: bool) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}-{read_committed}-{}-{}", std::process::id(), next_reader()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", if read_committed { "read_committed" } else { "read_uncommitted" });
    config
}

impl Reader {
    pub fn new(topic: &str, read_committed: bool) -> Reader {
        Reader::on(&brokers(), topic, read_committed)
    }

    /// A reader on another broker.
    pub fn on(brokers: &str, topic: &str, read_committed: bool) -> Reader {
        let consumer: BaseConsumer =
            reader_config(brokers, topic, read_committed).set("auto.offset.reset", "earliest").create().unwrap();
        consumer.subscribe(&[topic]).unwrap();
        Reader { consumer, records: Vec::new() }
    }

    /// A reader that assigns itself every partition of `topic` rather than joining a group: no
    /// coordinator, session or rebalance, so a broker paused, restarted or killed under it only
    /// delays its fetches (a group reader once read nothing for 90 s after a 15 s broker pause,
    /// while a fresh reader saw every result). For topics whose partitions do not change while
    /// it reads.
    pub fn assigned(brokers: &str, topic: &str, read_committed: bool) -> Reader {
        let consumer: BaseConsumer = reader_config(brokers, topic, read_committed).create().unwrap();
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(30)).unwrap();
        let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len());
        assert!(partitions > 0, "topic {topic} has no partitions to read");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions as i32 {
            assignment.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
        }
        consumer.assign(&assignment).unwrap();
        Reader { consumer, records: Vec::new() }
    }

    /// Reads for up to `duration`.
    pub fn poll_for(&mut self, duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => self.records.push(Record {
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.to_string(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp_ms: m.timestamp().to_millis(),
                }),
                Some(Err(e)) => eprintln!("reader: {e}"),
                None => {}
            }
        }
    }

    /// Reads until `count` records were seen or `timeout` passed.
    pub fn read_until(&mut self, count: usize, timeout: Duration) -> &[Record] {
        let until = Instant::now() + timeout;
        while self.records.len() < count && Instant::now() < until {
            self.poll_for(Duration::from_millis(200));
        }
        &self.records
    }

    /// How many times each result id was seen.
    pub fn id_counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for r in &self.records {
            let id = r.json()["id"].as_str().unwrap_or_default().to_string();
            *counts.entry(id).or_insert(0) += 1;
        }
        counts
    }
}

/// `n` sentiment requests `r0..` cycling through [`LABELLED`].
pub fn requests(n: usize) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("r{i}"), LABELLED[i % LABELLED.len()].0.to_string())).collect()
}

/// Every expected id exactly once in what `reader` saw, and nothing else.
pub fn assert_exactly_once(reader: &Reader, expected: &[(String, String)]) {
    assert_each_id_once(reader, expected.iter().map(|(id, _)| id.as_str()));
}

/// Every id in `ids` answered once in `reader`, and nothing else answered.
pub fn assert_each_id_once<'a>(reader: &Reader, ids: impl IntoIterator<Item = &'a str>) {
    let counts = reader.id_counts();
    let duplicates: Vec<_> = counts.iter().filter(|(_, &c)| c > 1).collect();
    if !duplicates.is_empty() {
        // Where each copy sits and who wrote it: what a diagnosis starts from.
        for record in &reader.records {
            let id = record.json()["id"].as_str().unwrap_or_default().to_string();
            if counts.get(&id).is_some_and(|&c| c > 1) {
                eprintln!(
                    "duplicate {id}: partition {} offset {} timestamp {:?} processor {:?}",
                    record.partition,
                    record.offset,
                    record.timestamp_ms,
                    record.headers.get("tidal.processor")
                );
            }
        }
    }
    assert!(duplicates.is_empty(), "duplicates in read_committed: {duplicates:?}");
    let wanted: std::collections::HashSet<&str> = ids.into_iter().collect();
    let got: std::collections::HashSet<&str> = counts.keys().map(String::as_str).collect();
    let missing: Vec<_> = wanted.difference(&got).take(10).collect();
    let unexpected: Vec<_> = got.difference(&wanted).take(10).collect();
    assert!(missing.is_empty(), "missing results: {missing:?} ...");
    assert!(unexpected.is_empty(), "results nobody asked for: {unexpected:?}");
    assert_eq!(reader.records.len(), wanted.len());
}

/// Sends SIGTERM and waits for the exit status, at most `timeout`.
pub fn terminate(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

/// Unambiguous sentences and their expected labels.
pub const LABELLED: &[(&str, &str)] = &[
    ("An absolute masterpiece, moving and beautifully acted.", "positive"),
    ("One of the best films of the year: funny, warm and wise.", "positive"),
    ("I loved this movie", "positive"),
    ("A boring, clumsy mess that wastes its talented cast.", "negative"),
    ("Worst two hours of my life. Avoid.", "negative"),
    ("terrible film", "negative"),
];

/// Asserts that `value` matches `topics/schemas/<schema>.schema.json` (the published contract).
pub fn assert_matches_schema(value: &serde_json::Value, schema: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("topics/schemas/{schema}.schema.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema_json: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema_json).expect("schema is a valid JSON Schema");
    let errors: Vec<String> = validator.iter_errors(value).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{value} does not match {schema}: {errors:?}");
}

/// Headers as a JSON object (for the dead-letter headers schema).
pub fn headers_json(headers: &HashMap<String, String>) -> serde_json::Value {
    headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect()
}

/// True when the long fault suite runs (scripts/faults.sh sets TIDAL_FAULTS_LONG=1).
pub fn long_form() -> bool {
    std::env::var("TIDAL_FAULTS_LONG").is_ok_and(|v| v == "1")
}

/// Appends one scenario's counts to `$TIDAL_FAULT_REPORT` (JSON lines) when it is set, for the
/// per-scenario table of scripts/faults.sh. Call before asserting, so failures are reported too.
pub fn report_scenario(scenario: &str, reader: &Reader, expected: &[(String, String)], extra: serde_json::Value) {
    let Ok(path) = std::env::var("TIDAL_FAULT_REPORT") else { return };
    let counts = reader.id_counts();
    let wanted: std::collections::HashSet<&str> = expected.iter().map(|(id, _)| id.as_str()).collect();
    let duplicates: usize = counts.values().filter(|&&c| c > 1).map(|c| c - 1).sum();
    let missing = wanted.iter().filter(|id| !counts.contains_key(**id)).count();
    let unexpected = counts.keys().filter(|id| !wanted.contains(id.as_str())).count();
    let mut line = serde_json::json!({
        "scenario": scenario,
        "requests": expected.len(),
        "results": reader.records.len(),
        "duplicates": duplicates,
        "missing": missing,
        "unexpected": unexpected,
    });
    if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
        line.extend(extra.clone());
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("fault report file");
    writeln!(file, "{line}").expect("write the fault report");
}

/// Resident memory of a process, in MiB (Linux /proc).
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A TCP port free on 127.0.0.1 right now (for a child's HTTP listener).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET `http://127.0.0.1:<port><path>`: the status code and body, or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string());
    Some((status, body))
}

/// Grows `topic` to `partitions` partitions.
pub fn add_partitions(brokers: &str, topic: &str, partitions: usize) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let grow = rdkafka::admin::NewPartitions::new(topic, partitions);
    for result in runtime.block_on(admin.create_partitions(&[grow], &AdminOptions::new())).expect("create partitions") {
        result.expect("partitions added");
    }
}

/// Sentiment requests as (key, value) records: `{"id", "text"}` keyed by id.
pub fn text_records(requests: &[(String, String)]) -> Vec<(String, Vec<u8>)> {
    requests
        .iter()
        .map(|(id, text)| (id.clone(), serde_json::json!({"id": id, "text": text}).to_string().into_bytes()))
        .collect()
}

/// `records` with a bad one (not JSON, keyed `bad<n>`) after every `every`th: what a fault
/// scenario mixes in to check the dead-letter topic exactly-once too. Returns the bad keys.
pub fn with_bad_input(records: Vec<(String, Vec<u8>)>, every: usize) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let (mut mixed, mut bad) = (Vec::with_capacity(records.len() + records.len() / every), Vec::new());
    for (i, record) in records.into_iter().enumerate() {
        mixed.push(record);
        if i % every == every / 2 {
            let key = format!("bad{}", bad.len());
            mixed.push((key.clone(), format!("not json {key}").into_bytes()));
            bad.push(key);
        }
    }
    (mixed, bad)
}

/// Each key in `keys` dead-lettered exactly once in what `dlq` saw, and nothing else.
pub fn assert_dead_lettered_once(dlq: &Reader, keys: &[String]) {
    let mut dead: Vec<String> = dlq.records.iter().map(|r| r.key.clone().unwrap_or_default()).collect();
    dead.sort();
    let mut wanted = keys.to_vec();
    wanted.sort();
    assert_eq!(dead, wanted, "each bad request dead-lettered exactly once");
}

/// Produces (key, value) `records` to `topic` at `rate` per second on a thread of its own; the
/// thread returns when each key was sent (ms since the epoch).
pub fn paced_producer(
    brokers: &str,
    topic: &str,
    records: Vec<(String, Vec<u8>)>,
    rate: f64,
) -> std::thread::JoinHandle<HashMap<String, i64>> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    std::thread::spawn(move || {
        let producer: BaseProducer =
            // Idempotent: a stream that outlives a broker fault would otherwise write a request
            // twice when a produce is retried to the partition's new leader — two requests, two
            // (correct) answers, and a duplicate that is the test's own.
            ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("linger.ms", "5")
                .set("enable.idempotence", "true")
                .create()
                .expect("producer");
        let mut sent = HashMap::new();
        let start = Instant::now();
        for (i, (key, value)) in records.iter().enumerate() {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let mut record = BaseRecord::to(&topic).key(key).payload(value);
            while let Err((_, back)) = producer.send(record) {
                producer.poll(Duration::from_millis(5));
                record = back;
            }
            sent.insert(key.clone(), epoch_ms());
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(60)).expect("flush");
        sent
    })
}

/// Now, in ms since the epoch (the clock record timestamps use).
pub fn epoch_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// Produces one record (key and value) to one partition of `topic` and waits for delivery.
pub fn produce_to_partition(brokers: &str, topic: &str, partition: i32, key: &str, value: &str) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    producer.send(BaseRecord::to(topic).partition(partition).key(key).payload(value)).map_err(|(e, _)| e).unwrap();
    producer.flush(Duration::from_secs(30)).expect("flush");
}
