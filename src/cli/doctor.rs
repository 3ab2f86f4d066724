//! `tidal doctor`: the preflight a newcomer (or an on-call) runs before `tidal serve` — the same
//! configuration, checked piece by piece, as a checklist with the fix for each failure. Exit code
//! 0 only when every check passes.

use std::time::Duration;

use rdkafka::types::RDKafkaErrorCode;
use tidal::config::{GroupProtocol, ServeConfig};
use tidal::kafka::broker_apis::{self, BrokerApis};
use tidal::kafka::{self, access, probe, TopicReport};
use tidal::{models, tools};

use super::serve::ServeArgs;

type Admin = rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>;

/// One line of the checklist.
struct Check {
    /// `None`: not checked (said why).
    passed: Option<bool>,
    what: String,
    /// What to do about a failure.
    fix: Option<String>,
}

impl Check {
    fn pass(what: impl Into<String>) -> Self {
        Check { passed: Some(true), what: what.into(), fix: None }
    }

    fn skip(what: impl Into<String>) -> Self {
        Check { passed: None, what: what.into(), fix: None }
    }

    fn fail(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Check { passed: Some(false), what: what.into(), fix: Some(fix.into()) }
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let mut checks = Vec::new();
    match config.validate() {
        Ok(()) => checks.push(Check::pass("configuration is valid")),
        Err(e) => checks.push(Check::fail(format!("configuration: {e}"), "fix the named key")),
    }
    let cluster = tokio::task::block_in_place(|| probe::reach(&config.kafka, Duration::from_secs(5)));
    match &cluster {
        Ok(cluster) => {
            checks.push(Check::pass(format!(
                "Kafka at {} answers: {} broker(s), {} topic(s)",
                config.kafka.brokers,
                cluster.brokers,
                cluster.topics.len()
            )));
            checks.extend(tokio::task::block_in_place(|| broker_checks(&config)));
            match kafka::admin_client(&config.kafka) {
                Ok(admin) => {
                    checks.extend(topic_checks(&config, cluster, &admin).await);
                    checks.extend(tokio::task::block_in_place(|| access_checks(&config, &admin)));
                }
                Err(e) => checks.push(Check::fail(format!("admin client: {e}"), "fix [kafka] in the configuration")),
            }
        }
        Err(e) => checks.push(Check::fail(e.to_string(), "start the broker, or point --brokers / kafka.brokers at it")),
    }
    checks.extend(tokio::task::block_in_place(|| model_checks(&config)));
    checks.push(metrics_check(&config));
    let failed = checks.iter().filter(|c| c.passed == Some(false)).count();
    for check in &checks {
        let mark = match check.passed {
            Some(true) => "✓",
            Some(false) => "✗",
            None => "–",
        };
        println!("{mark} {}", check.what);
        if let Some(fix) = &check.fix {
            println!("    fix: {fix}");
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} checks failed", checks.iter().filter(|c| c.passed.is_some()).count());
    }
    println!("all {} checks passed", checks.iter().filter(|c| c.passed.is_some()).count());
    Ok(())
}

/// What the brokers speak: their release line, and the APIs `serve` needs — transactions always,
/// the KIP-848 consumer protocol when `kafka.group_protocol = "consumer"`. Brokers at different
/// releases (a rolling upgrade under way) are listed one by one.
fn broker_checks(config: &ServeConfig) -> Vec<Check> {
    let brokers = match broker_apis::describe(&config.kafka, Duration::from_secs(5)) {
        Ok(brokers) if !brokers.is_empty() => brokers,
        Ok(_) => return vec![Check::skip("broker versions not read: the metadata lists no broker")],
        Err(e) => return vec![Check::skip(format!("broker versions not read: {e}"))],
    };
    let mut releases: Vec<&str> = brokers.iter().map(BrokerApis::release).collect();
    releases.dedup();
    let mut checks = vec![if releases.len() == 1 {
        Check::pass(format!("{} broker(s) speak {}", brokers.len(), releases[0]))
    } else {
        let each: Vec<String> = brokers.iter().map(|b| format!("{} {}", b.address, b.release())).collect();
        Check::pass(format!("brokers at different releases (an upgrade under way?): {}", each.join(", ")))
    }];
    let lacking = |has: fn(&BrokerApis) -> bool| -> Vec<&str> {
        brokers.iter().filter(|b| !has(b)).map(|b| b.address.as_str()).collect()
    };
    let no_transactions = lacking(BrokerApis::has_transactions);
    checks.push(if no_transactions.is_empty() {
        Check::pass("brokers support transactions (exactly-once results)")
    } else {
        Check::fail(
            format!("no transactions on {}: results cannot be exactly-once", no_transactions.join(", ")),
            "upgrade the brokers to Kafka 0.11 or later (tidal is tested on 4.1)",
        )
    });
    if config.kafka.group_protocol == GroupProtocol::Consumer {
        let no_kip848 = lacking(BrokerApis::has_consumer_protocol);
        checks.push(if no_kip848.is_empty() {
            Check::pass("brokers serve the consumer group protocol (kafka.group_protocol = \"consumer\")")
        } else {
            Check::fail(
                format!("no KIP-848 consumer group protocol on {}", no_kip848.join(", ")),
                "set kafka.group_protocol = \"classic\", or upgrade the brokers to Kafka 4.0 or later",
            )
        });
    }
    checks
}

/// The topics serve needs: present, and as declared in `topics/` where they are declared there.
async fn topic_checks(config: &ServeConfig, cluster: &probe::Cluster, admin: &Admin) -> Vec<Check> {
    let needed = config.topics_needed();
    let declared = match kafka::load_topic_specs(None) {
        Ok(specs) => specs.into_iter().filter(|s| needed.contains(&s.name)).collect::<Vec<_>>(),
        Err(e) => return vec![Check::fail(format!("declared topics: {e}"), "a build bug: report it")],
    };
    let brokers = &config.kafka.brokers;
    let missing =
        |name: &str| Check::fail(format!("topic {name} is missing"), format!("tidal topics apply --brokers {brokers}"));
    // Topics under names of the configuration's own: present, with any partitions and configs.
    let mut checks: Vec<Check> = needed
        .iter()
        .filter(|name| !declared.iter().any(|s| &s.name == *name))
        .map(|name| match cluster.topics.get(name) {
            Some(partitions) => Check::pass(format!("topic {name} present ({partitions} partitions)")),
            None => missing(name),
        })
        .collect();
    match kafka::compare_topics(admin, &declared).await {
        Err(e) => checks.push(Check::fail(format!("topics: {e}"), "see the Kafka check above")),
        Ok(reports) => checks.extend(reports.into_iter().map(|report| match report {
            TopicReport::UpToDate { name } => Check::pass(format!("topic {name} as declared in topics/")),
            TopicReport::Differs { name, differences } => Check::fail(
                format!("topic {name} differs from topics/: {}", differences.join("; ")),
                "align the topic with its declaration (kafka-topics.sh / kafka-configs.sh), or the declaration with the topic",
            ),
            TopicReport::Missing { name } => missing(&name),
            TopicReport::Created { name, .. } => Check::pass(format!("topic {name} created")),
        })),
    }
    checks
}

/// What the brokers' authorizer grants this principal, against what `serve` needs: Read on the
/// group and the request topics, Write on the result and dead-letter topics. Transactional ids
/// cannot be described by a client, so their ACL is only named.
fn access_checks(config: &ServeConfig, admin: &Admin) -> Vec<Check> {
    let timeout = Duration::from_secs(10);
    let principal =
        config.kafka.security.username.as_deref().map_or("<principal>".to_string(), |u| format!("User:{u}"));
    let acl = |operation: &str, resource: &str| {
        format!(
            "kafka-acls.sh --bootstrap-server {} --add --allow-principal {principal} --operation {operation} --operation Describe {resource}",
            config.kafka.brokers
        )
    };
    let judge = |what: String, granted: &access::Granted, operation: &str, resource: String| match granted {
        Ok(ops) if ops.iter().any(|op| op == operation || op == "ALL") => {
            Check::pass(format!("{what}: this principal may {}", operation.to_lowercase()))
        }
        Ok(ops) => Check::fail(
            format!("{what}: this principal may not {} (granted: {})", operation.to_lowercase(), list(ops)),
            acl(&capitalised(operation), &resource),
        ),
        Err(code) => Check::fail(
            format!("{what}: the brokers would not describe it ({code})"),
            acl(&capitalised(operation), &resource),
        ),
    };
    let mut checks = Vec::new();
    let group = config.group_id();
    match access::group_operations(admin.inner(), &group, timeout) {
        Ok(Err(RDKafkaErrorCode::GroupIdNotFound)) => checks.push(Check::skip(format!(
            "group {group}: no member yet, so its ACLs cannot be read; serve needs Read on it"
        ))),
        Ok(granted) => checks.push(judge(format!("group {group}"), &granted, "READ", format!("--group {group}"))),
        Err(e) => checks.push(Check::fail(format!("group {group}: {e}"), "see the Kafka check above")),
    }
    let topics = config.topics_needed();
    match access::topic_operations(admin.inner(), &topics, timeout) {
        Ok(granted) => {
            for (topic, granted) in &granted {
                if granted == &Err(RDKafkaErrorCode::UnknownTopicOrPartition) {
                    continue; // Reported as missing above.
                }
                let writes = topic == &config.topics.dead_letter || topic.starts_with(&config.topics.result_prefix);
                let operation = if writes { "WRITE" } else { "READ" };
                checks.push(judge(format!("topic {topic}"), granted, operation, format!("--topic {topic}")));
            }
        }
        Err(e) => checks.push(Check::fail(format!("topic ACLs: {e}"), "see the Kafka check above")),
    }
    checks.push(Check::skip(format!(
        "transactional ids {}-*: Kafka does not describe them to clients; serve needs Write on them ({})",
        config.app,
        acl("Write", &format!("--transactional-id {}- --resource-pattern-type prefixed", config.app))
    )));
    checks
}

fn list(operations: &[String]) -> String {
    if operations.is_empty() {
        "nothing".into()
    } else {
        operations.iter().map(|op| op.to_lowercase()).collect::<Vec<_>>().join(", ")
    }
}

/// `READ` → `Read`, as kafka-acls.sh spells operations.
fn capitalised(operation: &str) -> String {
    let lower = operation.to_lowercase();
    let mut chars = lower.chars();
    chars.next().map_or(String::new(), |first| first.to_uppercase().chain(chars).collect())
}

fn model_checks(config: &ServeConfig) -> Vec<Check> {
    let library = config.onnxruntime_library();
    if let Err(e) = models::init_onnxruntime(&library) {
        return vec![Check::fail(format!("ONNX Runtime: {e}"), "run scripts/setup.sh, or set ORT_DYLIB_PATH")];
    }
    let mut checks = vec![Check::pass(format!("ONNX Runtime loads from {}", library.display()))];
    for name in &config.models {
        let verified =
            tools::verify(name, config.manifest_dir.as_deref(), &config.model_dir(), &library, None, &config.limits);
        checks.push(match verified {
            Ok(v) => Check::pass(format!(
                "model {name} {} loads in {:.0} ms and answers its sample in {:.1} ms",
                v.version,
                v.load.as_secs_f64() * 1e3,
                v.infer.as_secs_f64() * 1e3
            )),
            Err(e) => Check::fail(format!("model {name}: {e}"), "run scripts/setup.sh, or fix --model-dir / model_dir"),
        });
    }
    checks
}

fn metrics_check(config: &ServeConfig) -> Check {
    match config.metrics.address() {
        Ok(None) => Check::pass("metrics endpoint disabled (metrics.listen = \"\")"),
        Ok(Some(address)) => match std::net::TcpListener::bind(address) {
            Ok(_) => Check::pass(format!("metrics port {address} is free")),
            Err(e) => Check::fail(
                format!("metrics port {address}: {e}"),
                "stop what listens there, or choose another --metrics-listen",
            ),
        },
        Err(e) => Check::fail(e.to_string(), "set metrics.listen to ip:port"),
    }
}
