//! Checks of shipped artefacts that need no broker: docker-compose.yml, the example config,
//! topic files and manifests.

mod common;

use common::{repo, tidal};

#[test]
fn compose_file_parses_and_runs_kafka_and_tidal() {
    let text = std::fs::read_to_string(repo("docker-compose.yml")).unwrap();
    let compose: serde_yaml::Value = serde_yaml::from_str(&text).expect("docker-compose.yml is valid YAML");
    let services = compose["services"].as_mapping().expect("services");
    let image = compose["services"]["kafka"]["image"].as_str().unwrap();
    let pinned = format!("apache/kafka:{}", tidal::install::kafka_version());
    assert_eq!(image, pinned, "the broker image is the Kafka release of scripts/versions.env");
    let command: Vec<&str> =
        compose["services"]["tidal"]["command"].as_sequence().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(command[0], "serve");
    assert!(services.contains_key("topics"));
}

#[test]
fn example_config_is_valid() {
    let config = tidal::config::ServeConfig::from_file(&repo("tidal.example.toml")).expect("example config parses");
    assert_eq!(config.batch.max_batch, 32);
    assert_eq!(config.metrics.address().unwrap().unwrap().ip().to_string(), "127.0.0.1");
}

#[test]
fn shipped_manifests_parse() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(repo("models")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let manifest = tidal::models::Manifest::parse(&text, &path.display().to_string()).expect("manifest parses");
            names.push(manifest.name);
        }
    }
    names.sort();
    assert_eq!(
        names,
        ["echo", "face-match", "ocr", "sentiment"],
        "the three shipped models and echo, each named as its file"
    );
    // The float variant stands in for the built-in int8 sentiment model: same name, labels,
    // tokenizer, inputs.
    let fp32 = tidal::models::Manifest::find("sentiment", Some(&repo("models/fp32"))).expect("fp32 manifest");
    let int8 = tidal::models::Manifest::find("sentiment", None).unwrap();
    let (tidal::models::ModelKind::TextClassification(a), tidal::models::ModelKind::TextClassification(b)) =
        (&int8.kind, &fp32.kind)
    else {
        panic!("both are text classifiers")
    };
    assert_eq!((int8.name.as_str(), &a.labels, &a.tokenizer), ("sentiment", &b.labels, &b.tokenizer));
    assert_ne!((&int8.version, &a.model), (&fp32.version, &b.model), "its own version and model file");
}

fn serve_error(args: &[&str]) -> String {
    let out = tidal().arg("serve").args(args).env("TIDAL_LOG", "error").output().expect("run tidal");
    assert_eq!(out.status.code(), Some(1), "serve {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn start_up_errors_say_what_and_how_to_fix() {
    let err = serve_error(&["--brokers", "localhost"]);
    assert!(err.contains("bad broker address 'localhost'") && err.contains("host:port"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[batch]\nmax_batch = 8\nlingr = \"5ms\"\n").unwrap();
    let err = serve_error(&["--config", config.to_str().unwrap()]);
    assert!(err.contains("lingr") && err.contains("line 3"), "{err}");

    let lib = dir.path().join("lib.so");
    std::fs::write(&lib, b"").unwrap();
    let out = tidal()
        .args(["serve", "--model-dir", "/nonexistent-models", "--metrics-listen", ""])
        .env("ORT_DYLIB_PATH", &lib)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent-models/sentiment/model-int8.onnx") && err.contains("scripts/setup.sh"), "{err}");
}

#[test]
fn the_readme_scaler_example_parses() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let start = readme.find("```toml\n[watch]").expect("the scaler example in the README") + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let config = tidal::scale::ScaleConfig::from_toml(&readme[start..end]).expect("the README's scale.toml parses");
    assert_eq!(config.policies.max_replicas, 8);
    assert!(config.policies.lag.is_some() && config.policies.rate.is_some());
}

#[test]
fn simulate_compare_prints_a_table_per_built_in_trace_and_draws_them() {
    let out = tempfile::tempdir().unwrap();
    let output =
        tidal().args(["scale", "simulate", "--compare", "--slo", "5s", "--out"]).arg(out.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    for trace in ["match-day", "diurnal", "flash-spike"] {
        assert!(stdout.contains(&format!("trace {trace}:")), "{stdout}");
        assert!(out.path().join(format!("compare-{trace}.png")).is_file(), "compare-{trace}.png");
    }
    for configuration in ["KEDA-equivalent (lag)", "tidal", "tidal + latency SLO"] {
        let rows = stdout.lines().filter(|l| l.starts_with(&format!("| {configuration} |"))).count();
        assert_eq!(rows, 3, "one row per trace for {configuration}: {stdout}");
    }
}

/// One `| label | replica-seconds | seconds over SLO | ... |` row of a compare table.
fn compare_row(table: &str, label: &str) -> (f64, f64) {
    let row =
        table.lines().find(|l| l.starts_with(&format!("| {label} |"))).unwrap_or_else(|| panic!("{label}: {table}"));
    let cells: Vec<f64> = row.split('|').skip(2).take(2).map(|c| c.trim().parse().unwrap()).collect();
    (cells[0], cells[1])
}

#[test]
fn the_combined_configuration_waits_less_than_the_keda_equivalent_on_every_trace_for_at_most_ten_percent_more() {
    let out = tempfile::tempdir().unwrap();
    let output = tidal()
        .args(["scale", "simulate", "--compare", "--base-rate", "60", "--slo", "5s", "--config"])
        .arg(repo("deploy/simulation/sentiment-replica.toml"))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    for trace in ["match-day", "diurnal", "flash-spike"] {
        let table = stdout.split(&format!("trace {trace}:")).nth(1).and_then(|t| t.split("wrote").next()).unwrap();
        let (keda_cost, keda_over) = compare_row(table, "KEDA-equivalent (lag)");
        let (cost, over) = compare_row(table, "tidal + latency SLO + signals");
        assert!(over < keda_over, "{trace}: {over} s over the SLO, KEDA-equivalent {keda_over} s\n{table}");
        assert!(cost <= keda_cost * 1.10, "{trace}: {cost} replica-seconds, KEDA-equivalent {keda_cost}\n{table}");
    }
}
