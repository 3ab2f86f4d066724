//! Declarative topics (`topics/*.toml`): create what is missing, report what differs.
//! Partitions are never shrunk and existing settings are never changed silently: a difference is
//! reported for an operator to act on.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

use crate::error::{Error, Result};

/// How long an admin request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The topic files shipped in `topics/`, used when no folder is given.
const BUILT_IN: &[(&str, &str)] = &[
    ("sentiment.toml", include_str!("../../topics/sentiment.toml")),
    ("face-match.toml", include_str!("../../topics/face-match.toml")),
    ("ocr.toml", include_str!("../../topics/ocr.toml")),
    ("dlq.toml", include_str!("../../topics/dlq.toml")),
    ("scale.toml", include_str!("../../topics/scale.toml")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicFile {
    topic: Vec<TopicSpec>,
}

/// One topic as declared.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count: the ceiling on consumers that share the topic's load.
    pub partitions: i32,
    /// Copies of each partition (1 for a single local broker; 3 in production).
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// Topic configs (`retention.ms`, `cleanup.policy`, ...), as Kafka names them.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

fn default_replication() -> i32 {
    1
}

/// What `apply` did or found for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicReport {
    Missing { name: String },
    Created { name: String, partitions: i32 },
    UpToDate { name: String },
    Differs { name: String, differences: Vec<String> },
}

impl std::fmt::Display for TopicReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicReport::Missing { name } => write!(f, "missing    {name}"),
            TopicReport::Created { name, partitions } => write!(f, "created    {name} ({partitions} partitions)"),
            TopicReport::UpToDate { name } => write!(f, "up to date {name}"),
            TopicReport::Differs { name, differences } => write!(f, "DIFFERS    {name}: {}", differences.join("; ")),
        }
    }
}

/// Reads every `*.toml` in `dir` (sorted), or the built-in files when `dir` is `None`.
pub fn load_topic_specs(dir: Option<&Path>) -> Result<Vec<TopicSpec>> {
    let mut files: Vec<(String, String)> = Vec::new();
    match dir {
        None => files.extend(BUILT_IN.iter().map(|(n, t)| (format!("built-in {n}"), t.to_string()))),
        Some(dir) => files.extend(
            crate::config::read_toml_files(dir)?.into_iter().map(|(path, text)| (path.display().to_string(), text)),
        ),
    }
    let mut specs = Vec::new();
    for (origin, text) in files {
        let file: TopicFile = toml::from_str(&text).map_err(|e| Error::Config(format!("{origin}: {}", e.message())))?;
        for spec in file.topic {
            if spec.partitions < 1 || spec.replication_factor < 1 {
                return Err(Error::Config(format!(
                    "{origin}: topic {}: partitions and replication_factor must be ≥ 1",
                    spec.name
                )));
            }
            specs.push(spec);
        }
    }
    Ok(specs)
}

/// Creates missing topics and reports differences in partitions or configs of existing ones.
pub async fn apply_topics(
    admin: &AdminClient<DefaultClientContext>,
    specs: &[TopicSpec],
    replication_override: Option<i32>,
) -> Result<Vec<TopicReport>> {
    let found = compare_topics(admin, specs).await?;
    let missing: Vec<&TopicSpec> = specs
        .iter()
        .filter(|s| found.iter().any(|r| matches!(r, TopicReport::Missing { name } if *name == s.name)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|spec| {
            let replication = TopicReplication::Fixed(replication_override.unwrap_or(spec.replication_factor));
            spec.config.iter().fold(NewTopic::new(&spec.name, spec.partitions, replication), |t, (k, v)| t.set(k, v))
        })
        .collect();
    let mut reports: Vec<TopicReport> =
        found.into_iter().filter(|r| !matches!(r, TopicReport::Missing { .. })).collect();
    if !new_topics.is_empty() {
        let results =
            admin.create_topics(&new_topics, &options).await.map_err(|e| Error::kafka("creating topics", e))?;
        for (result, spec) in results.into_iter().zip(&missing) {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    reports.push(TopicReport::Created { name: spec.name.clone(), partitions: spec.partitions })
                }
                Err((name, code)) => {
                    return Err(Error::Config(format!(
                        "cannot create topic {name}: {code} (check ACLs and broker limits)"
                    )))
                }
            }
        }
    }
    Ok(reports)
}

/// How each declared topic stands on the cluster: missing, as declared, or different (partitions
/// or configs). Changes nothing.
pub async fn compare_topics(
    admin: &AdminClient<DefaultClientContext>,
    specs: &[TopicSpec],
) -> Result<Vec<TopicReport>> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, TIMEOUT)
        .map_err(|e| Error::kafka("reading cluster metadata (is the broker reachable?)", e))?;
    let existing: BTreeMap<String, i32> =
        metadata.topics().iter().map(|t| (t.name().to_string(), t.partitions().len() as i32)).collect();
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let mut reports = Vec::new();
    for spec in specs {
        let Some(&partitions) = existing.get(&spec.name) else {
            reports.push(TopicReport::Missing { name: spec.name.clone() });
            continue;
        };
        let mut differences = Vec::new();
        if partitions != spec.partitions {
            differences.push(format!("{partitions} partitions, declared {}", spec.partitions));
        }
        if !spec.config.is_empty() {
            let described = admin
                .describe_configs(&[ResourceSpecifier::Topic(&spec.name)], &options)
                .await
                .map_err(|e| Error::kafka(format!("describing topic {}", spec.name), e))?;
            if let Some(Ok(resource)) = described.into_iter().next() {
                for (key, wanted) in &spec.config {
                    let actual = resource.get(key).and_then(|entry| entry.value.clone());
                    if actual.as_deref() != Some(wanted.as_str()) {
                        differences
                            .push(format!("{key} = {}, declared {wanted}", actual.as_deref().unwrap_or("<unset>")));
                    }
                }
            }
        }
        reports.push(if differences.is_empty() {
            TopicReport::UpToDate { name: spec.name.clone() }
        } else {
            TopicReport::Differs { name: spec.name.clone(), differences }
        });
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_topics_parse() {
        let specs = load_topic_specs(None).unwrap();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"tidal.requests.sentiment"));
        assert!(names.contains(&"tidal.results.sentiment"));
        assert!(names.contains(&"tidal.dlq"));
    }

    #[test]
    fn repository_topics_match_built_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topics");
        let from_dir: Vec<String> = load_topic_specs(Some(&dir)).unwrap().into_iter().map(|s| s.name).collect();
        let built_in: Vec<String> = load_topic_specs(None).unwrap().into_iter().map(|s| s.name).collect();
        let (mut a, mut b) = (from_dir, built_in);
        a.sort();
        b.sort();
        assert_eq!(a, b, "topics/ and the built-in list disagree: add the new file to BUILT_IN");
    }
}
