//! `tidal doctor`: the preflight a newcomer (or an on-call) runs before `tidal serve` — the same
//! configuration, checked piece by piece, as a checklist with the fix for each failure. Exit code
//! 0 only when every check passes.

use std::time::Duration;

use tidal::config::ServeConfig;
use tidal::kafka::{self, probe, TopicReport};
use tidal::{models, tools};

use super::serve::ServeArgs;

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
            checks.extend(topic_checks(&config, cluster).await);
        }
        Err(e) => checks.push(Check::fail(e.to_string(), "start the broker, or point --brokers / kafka.brokers at it")),
    }
    checks.push(Check::skip(
        "ACLs: not checked (the client library has no DescribeAcls); a topic the principal may not describe shows \
         above as missing",
    ));
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

/// The topics serve needs: present, and as declared in `topics/` where they are declared there.
async fn topic_checks(config: &ServeConfig, cluster: &probe::Cluster) -> Vec<Check> {
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
    let admin = match kafka::admin_client(&config.kafka) {
        Ok(admin) => admin,
        Err(e) => return vec![Check::fail(format!("admin client: {e}"), "fix [kafka] in the configuration")],
    };
    match kafka::compare_topics(&admin, &declared).await {
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
