//! The deployment artefacts, checked with the tools that consume them: the Dockerfile with
//! hadolint and against the repository, docker-compose.yml with the Compose Specification loader
//! of `docker compose` (compose-go, in tests/deploy-check), the Prometheus configuration, alert
//! rules and every Grafana query with promtool, the Kubernetes manifests decoded strictly into
//! their API types, and the dashboard's metric names against a live scrape of tidal.
//!
//! The tools come from scripts/setup-checks.sh (run by scripts/test.sh), which exports their
//! paths; the tests are compiled only with `--features broker-tests`.
#![cfg(feature = "broker-tests")]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{repo, Fixture, Server};

const NEEDS_TOOLS: &str = "needs the check tools: run scripts/test.sh";

fn tool(env: &str, fallback: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| fallback.to_string())
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(repo(""))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): {NEEDS_TOOLS}"))
}

fn assert_ok(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

fn deploy_check(args: &[&str]) -> Output {
    run(&tool("TIDAL_DEPLOY_CHECK", "deploy-check"), args)
}

#[test]
fn dockerfile_lints_clean_and_matches_the_repository() {
    let hadolint = tool("TIDAL_HADOLINT", "hadolint");
    // DL3008 (pin Debian package versions) is waived in the Dockerfile's own words.
    assert_ok(&run(&hadolint, &["--ignore", "DL3008", "Dockerfile"]), "hadolint Dockerfile");

    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let mut stages = BTreeSet::new();
    for line in dockerfile.lines().map(str::trim) {
        if let Some(from) = line.strip_prefix("FROM ") {
            if let Some((_, name)) = from.split_once(" AS ") {
                stages.insert(name.trim().to_string());
            }
        }
        let Some(copy) = line.strip_prefix("COPY ") else { continue };
        let words: Vec<&str> = copy.split_whitespace().collect();
        if let Some(stage) = words[0].strip_prefix("--from=") {
            assert!(stages.contains(stage), "COPY --from={stage} names no earlier stage: {line}");
            continue;
        }
        for source in &words[..words.len() - 1] {
            assert!(repo(source).exists(), "COPY source {source} is not in the repository: {line}");
        }
    }
    for stage in ["models", "build", "runtime", "scaler"] {
        assert!(stages.contains(stage), "stage {stage} missing: {stages:?}");
    }
    // The models stage copies every script setup-models.sh runs.
    let setup_models = std::fs::read_to_string(repo("scripts/setup-models.sh")).unwrap();
    for script in ["build_sentiment_model.py", "build_face_models.py", "common.sh"] {
        assert!(setup_models.contains(script) || script == "common.sh");
        assert!(dockerfile.contains(&format!("scripts/{script}")), "Dockerfile does not copy scripts/{script}");
    }
    // Versions come from scripts/versions.env: the set-up scripts source it and the build
    // compiles it in, so both stages copy it; the runtime takes whichever ONNX Runtime the
    // set-up installed.
    let copies = dockerfile.lines().filter(|l| l.starts_with("COPY") && l.contains("scripts/versions.env")).count();
    assert_eq!(copies, 2, "the models and build stages copy scripts/versions.env");
    assert!(dockerfile.contains("onnxruntime-*/libonnxruntime.so"), "the runtime copies the installed ONNX Runtime");
    assert!(dockerfile.contains("ORT_DYLIB_PATH=") && dockerfile.contains("TIDAL_MODEL_DIR="));
}

#[test]
fn compose_file_loads_with_the_compose_loader() {
    let project: serde_json::Value =
        serde_json::from_str(&assert_ok(&deploy_check(&["compose", "docker-compose.yml"]), "compose loader"))
            .expect("the loader prints the project as JSON");
    let services = project["services"].as_object().unwrap();
    for name in ["kafka", "topics", "tidal", "scaler", "gateway", "prometheus", "grafana"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    let kafka = &services["kafka"];
    assert!(kafka["image"].as_str().unwrap().starts_with("apache/kafka:4"));
    assert!(kafka["environment"]["KAFKA_PROCESS_ROLES"].as_str().unwrap().contains("controller"), "KRaft");
    assert_eq!(services["tidal"]["command"][0], "serve");
    assert_eq!(services["tidal"]["environment"]["TIDAL_BROKERS"], "kafka:9092");
    assert_eq!(services["scaler"]["command"][0], "scale");
    assert_eq!(services["scaler"]["command"][1], "run");
    assert_eq!(services["topics"]["depends_on"]["kafka"]["condition"], "service_healthy");
    assert_eq!(services["tidal"]["depends_on"]["topics"]["condition"], "service_completed_successfully");

    // Every bind mount points at a file or folder of the repository.
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            if volume["type"] == "bind" {
                let source = volume["source"].as_str().unwrap();
                if source.starts_with(repo("").to_str().unwrap()) {
                    assert!(Path::new(source).exists(), "{name}: bind source {source} does not exist");
                }
            }
        }
    }
    // The scaler's config drives the compose actuator on the processor service.
    let scale = tidal::scale::ScaleConfig::from_file(&repo("deploy/compose/scale.toml")).expect("scale.toml");
    let actuator = format!("{:?}", scale.actuator);
    assert!(actuator.contains("Compose") && actuator.contains("\"tidal\""), "{actuator}");

    // Where the docker CLI with the compose plugin exists, it must agree.
    let docker_compose = Command::new("docker").args(["compose", "version"]).output();
    if docker_compose.is_ok_and(|o| o.status.success()) {
        assert_ok(&run("docker", &["compose", "-f", "docker-compose.yml", "config", "-q"]), "docker compose config");
    }
}

/// The PromQL expressions of the dashboard's panels, with their titles.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo("deploy/grafana/dashboards/tidal.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let mut queries = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_i64().unwrap()), "panel ids are unique");
        let title = panel["title"].as_str().unwrap().to_string();
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {title} uses the datasource variable");
            queries.push((title.clone(), target["expr"].as_str().unwrap().to_string()));
        }
    }
    queries
}

/// The `tidal_*` metric names an expression reads (histogram series mapped to their family).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (start, _) in expr.match_indices("tidal_") {
        let name: String = expr[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .fold(name.clone(), |n, s| n.strip_suffix(s).map(str::to_string).unwrap_or(n));
        names.insert(family);
    }
    names
}

#[test]
fn prometheus_config_alerts_and_dashboard_queries_pass_promtool() {
    let promtool = tool("TIDAL_PROMTOOL", "promtool");
    assert_ok(&run(&promtool, &["check", "config", "deploy/prometheus/prometheus.yml"]), "promtool check config");

    // Each dashboard query as a recording rule: promtool parses every expression.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("dashboard-rules.yml");
    let mut text = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let queries = dashboard_queries();
    for (i, (_, expr)) in queries.iter().enumerate() {
        text.push_str(&format!("      - record: dashboard:query_{i}\n        expr: {}\n", serde_json::json!(expr)));
    }
    std::fs::write(&rules, text).unwrap();
    let checked = assert_ok(&run(&promtool, &["check", "rules", rules.to_str().unwrap()]), "promtool check rules");
    assert!(checked.contains(&format!("{} rules found", queries.len())), "{checked}");
}

#[test]
fn kubernetes_manifests_decode_strictly_into_their_api_types() {
    let files = [
        "deploy/kubernetes/namespace.yaml",
        "deploy/kubernetes/processor.yaml",
        "deploy/kubernetes/scaler.yaml",
        "deploy/kubernetes/monitoring.yaml",
        "deploy/kubernetes/keda/scaledobject.yaml",
    ];
    let mut args = vec!["kubernetes"];
    args.extend(files);
    let listed = assert_ok(&deploy_check(&args), "strict decoding");
    for expected in [
        "Deployment\ttidal-processor",
        "Deployment\ttidal-scaler",
        "Role\ttidal-scaler",
        "RoleBinding\ttidal-scaler",
        "ServiceAccount\ttidal-scaler",
        "PodMonitor\ttidal",
        "ScaledObject\ttidal-processor",
        "Job\ttidal-topics",
    ] {
        assert!(listed.contains(expected), "{expected} not found in:\n{listed}");
    }

    // The checker refuses what the API server would: an unknown field fails.
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.yaml");
    let scaler = std::fs::read_to_string(repo("deploy/kubernetes/scaler.yaml")).unwrap();
    std::fs::write(&typo, scaler.replace("resourceNames:", "resourceName:")).unwrap();
    let refused = deploy_check(&["kubernetes", typo.to_str().unwrap()]);
    assert!(!refused.status.success(), "a misspelt field must fail");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown field \"resourceName\""));

    // kustomize assembles the same resources (where kubectl is installed).
    if Command::new("kubectl").arg("version").arg("--client").output().is_ok_and(|o| o.status.success()) {
        let built = assert_ok(&run("kubectl", &["kustomize", "deploy"]), "kubectl kustomize deploy");
        let all = dir.path().join("all.yaml");
        std::fs::write(&all, &built).unwrap();
        let listed = assert_ok(&deploy_check(&["kubernetes", all.to_str().unwrap()]), "kustomized manifests");
        assert!(listed.contains("ConfigMap\ttidal-grafana-dashboard"), "{listed}");
    }
}

/// The YAML documents of a manifest file.
fn documents(path: &str) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(repo(path)).unwrap();
    serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

fn find<'a>(docs: &'a [serde_yaml::Value], kind: &str, name: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("{kind} {name} not found"))
}

#[test]
fn kubernetes_manifests_keep_their_promises() {
    let processor = documents("deploy/kubernetes/processor.yaml");
    let deployment = find(&processor, "Deployment", "tidal-processor");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let resources = &container["resources"];
    assert_eq!(resources["requests"], resources["limits"], "Guaranteed QoS: requests equal limits");
    let cpus: u32 = resources["limits"]["cpu"].as_str().unwrap().parse().expect("an integer CPU count");
    assert!(cpus >= 2, "N−1 workers need at least 2 CPUs");
    assert!(deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap() >= 30);

    // The processor's and the scaler's configs are ones tidal accepts.
    let config = find(&processor, "ConfigMap", "tidal-processor")["data"]["tidal.toml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tidal.toml");
    std::fs::write(&path, config).unwrap();
    let serve = tidal::config::ServeConfig::from_file(&path).expect("processor config");
    assert_eq!(serve.workers, 0, "workers follow the pod's CPUs");
    let scaler = documents("deploy/kubernetes/scaler.yaml");
    let scale_toml = find(&scaler, "ConfigMap", "tidal-scaler")["data"]["scale.toml"].as_str().unwrap();
    let scale = tidal::scale::ScaleConfig::from_toml(scale_toml).expect("scaler config");
    let actuator = format!("{:?}", scale.actuator);
    assert!(actuator.contains("Kubernetes") && actuator.contains("\"tidal-processor\""), "{actuator}");

    // Least privilege: the scaler may read its Deployment and change its scale, nothing else.
    let role = find(&scaler, "Role", "tidal-scaler");
    for rule in role["rules"].as_sequence().unwrap() {
        let resources: Vec<&str> = rule["resources"].as_sequence().unwrap().iter().filter_map(|r| r.as_str()).collect();
        let verbs: Vec<&str> = rule["verbs"].as_sequence().unwrap().iter().filter_map(|v| v.as_str()).collect();
        let names: Vec<&str> = rule["resourceNames"].as_sequence().unwrap().iter().filter_map(|n| n.as_str()).collect();
        assert_eq!(names, ["tidal-processor"], "rules name the one Deployment");
        assert!(verbs.iter().all(|v| ["get", "patch", "update"].contains(v)), "{verbs:?}");
        match resources.as_slice() {
            ["deployments"] => assert_eq!(verbs, ["get"]),
            ["deployments/scale"] => {}
            other => panic!("unexpected resources {other:?}"),
        }
    }
    let account = find(&scaler, "Deployment", "tidal-scaler")["spec"]["template"]["spec"]["serviceAccountName"].clone();
    assert_eq!(account.as_str(), Some("tidal-scaler"));

    // The KEDA example and tidal's equivalent policy say the same thing.
    let keda = &documents("deploy/kubernetes/keda/scaledobject.yaml")[0];
    let equivalent =
        tidal::scale::ScaleConfig::from_file(&repo("deploy/kubernetes/keda/scale.toml")).expect("equivalent policy");
    let lag = equivalent.policies.lag.as_ref().expect("lag policy");
    let p = &equivalent.policies;
    let others = (p.rate.is_some(), p.latency.is_some(), p.predictive.is_some(), p.ladder.len(), p.schedule.len());
    assert_eq!(others, (false, false, false, 0, 0), "KEDA's Kafka scaler has the lag policy only");
    let trigger = &keda["spec"]["triggers"][0]["metadata"];
    assert_eq!(trigger["lagThreshold"].as_str().unwrap().parse::<u64>().unwrap(), lag.lag_threshold);
    assert_eq!(
        trigger["activationLagThreshold"].as_str().unwrap().parse::<u64>().unwrap(),
        lag.activation_lag_threshold
    );
    assert_eq!(trigger["consumerGroup"].as_str(), Some(equivalent.watch.group.as_str()));
    assert_eq!(keda["spec"]["minReplicaCount"].as_u64().unwrap(), u64::from(equivalent.policies.min_replicas));
    assert_eq!(keda["spec"]["maxReplicaCount"].as_u64().unwrap(), u64::from(equivalent.policies.max_replicas));
    let window = keda["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        ["stabilizationWindowSeconds"]
        .as_u64()
        .unwrap();
    assert_eq!(window, equivalent.policies.damping.stabilization.as_secs());
}

fn scrape(port: u16) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        for _ in 0..120 {
            if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
                if let Ok(text) = response.text().await {
                    return text;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("nothing answered on 127.0.0.1:{port}/metrics")
    })
}

/// Metric families in a Prometheus text exposition.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn dashboard_and_alerts_read_metrics_tidal_exports() {
    // A processor that answered requests and dead-lettered one, with metrics on.
    let fx = Fixture::new("dashboard", 1, "");
    let processor_port = common::free_port();
    let config = std::fs::read_to_string(&fx.config_path).unwrap();
    std::fs::write(
        &fx.config_path,
        config.replace("listen = \"\"", &format!("listen = \"127.0.0.1:{processor_port}\"")),
    )
    .unwrap();
    let mut records: Vec<(Option<String>, Option<Vec<u8>>)> = (0..5)
        .map(|i| (Some(format!("d{i}")), Some(format!(r#"{{"id":"d{i}","text":"fine"}}"#).into_bytes())))
        .collect();
    records.push((Some("bad".into()), Some(b"not json".to_vec())));
    fx.produce(&records);
    let _server = fx.spawn("a");
    let mut results = common::Reader::new(&fx.results(), true);
    results.read_until(5, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(6)); // the lag gauge comes with librdkafka's 5 s statistics
    let mut names = exported(&scrape(processor_port));

    // The scaler (dry run) and the gateway, each with its own endpoint.
    let scaler_port = common::free_port();
    let scale_toml = fx.dir.path().join("scale.toml");
    let policies = "[policies]\nmin_replicas = 1\nmax_replicas = 2\nlag = { lag_threshold = 100 }\n[actuator]\nkind = \"dry-run\"\n";
    let watch = format!("metrics_listen = \"127.0.0.1:{scaler_port}\"");
    let text = common::scale_toml(&format!("tidal-{}", fx.prefix), &fx.requests(), &watch, policies);
    std::fs::write(&scale_toml, text).unwrap();
    let _scaler = Server(
        common::tidal()
            .args(["scale", "run", "--brokers", &fx.brokers, "--config", scale_toml.to_str().unwrap()])
            .env("TIDAL_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(4)); // a few observations
    names.extend(exported(&scrape(scaler_port)));
    let gateway_port = common::free_port();
    let metrics_port = common::free_port();
    let _gateway = Server(
        common::tidal()
            .args(["gateway", "--config", fx.config_path.to_str().unwrap(), "--model", "sentiment"])
            .args(["--listen", &format!("127.0.0.1:{gateway_port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .env("TIDAL_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = runtime.block_on(async {
        for _ in 0..120 {
            let sent = reqwest::Client::new()
                .post(format!("http://127.0.0.1:{gateway_port}/v1/models/sentiment"))
                .body(r#"{"text": "fine"}"#)
                .send()
                .await;
            if let Ok(response) = sent {
                return response.status().as_u16();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        0
    });
    assert_eq!(status, 200);
    names.extend(exported(&scrape(metrics_port)));

    // Counted only when they happen (a client rebuild after an error, a panic caught): declared in
    // src/metrics.rs.
    let event_only = ["tidal_worker_restarts_total", "tidal_panics_caught_total"];
    let metrics_rs = std::fs::read_to_string(repo("src/metrics.rs")).unwrap();
    let mut used: HashMap<String, Vec<String>> = HashMap::new();
    for (title, expr) in dashboard_queries() {
        for name in metric_names(&expr) {
            used.entry(name).or_default().push(format!("panel {title:?}"));
        }
    }
    let alerts: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).unwrap()).unwrap();
    for rule in alerts["groups"][0]["rules"].as_sequence().unwrap() {
        for name in metric_names(rule["expr"].as_str().unwrap()) {
            used.entry(name).or_default().push(format!("alert {}", rule["alert"].as_str().unwrap()));
        }
    }
    assert!(used.len() >= 15, "the dashboard reads most metrics: {used:?}");
    for (name, users) in &used {
        if event_only.contains(&name.as_str()) {
            assert!(metrics_rs.contains(&format!("\"{name}\"")), "{name} is declared");
            continue;
        }
        assert!(names.contains(name), "{name} (used by {users:?}) is not exported; exported: {names:?}");
    }
}
