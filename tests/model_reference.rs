//! The sentiment model run by tidal (Rust tokenizers + ONNX Runtime via `ort`) against the
//! reference outputs written at set-up by Python tokenizers + ONNX Runtime (reference.json).

use std::path::PathBuf;

use tidal::codec::Input;
use tidal::config::ServeConfig;
use tidal::models::{self, Manifest, Model, ModelKind, TextClassifier};

fn load() -> (TextClassifier, serde_json::Value) {
    let config = ServeConfig::default();
    models::init_onnxruntime(&config.onnxruntime_library()).expect("ONNX Runtime (run scripts/setup.sh)");
    let manifest = Manifest::find("sentiment", None).unwrap();
    let ModelKind::TextClassification(spec) = &manifest.kind else { panic!("sentiment is a text classifier") };
    let model_dir: PathBuf = config.model_dir();
    let classifier = TextClassifier::load(&manifest, spec, &model_dir).expect("sentiment model (run scripts/setup.sh)");
    let reference = std::fs::read_to_string(model_dir.join("sentiment/reference.json")).expect("reference.json");
    (classifier, serde_json::from_str(&reference).unwrap())
}

#[test]
#[ignore = "needs the models installed: run scripts/test.sh"]
fn outputs_match_the_python_reference() {
    let (mut classifier, reference) = load();
    let outputs = reference["outputs"].as_array().unwrap();
    let texts: Vec<&str> = outputs.iter().map(|o| o["text"].as_str().unwrap()).collect();
    // Token ids must be the same as the Python tokenizer's.
    let tokens = classifier.tokenize(&texts).unwrap();
    for (o, ids) in outputs.iter().zip(&tokens) {
        let want: Vec<i64> = o["input_ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(ids, &want, "tokens of {:?}", o["text"]);
    }
    // One at a time and as one padded batch: both within 1e-4 of the reference.
    let batched = classifier.probabilities(&texts).unwrap();
    for (i, o) in outputs.iter().enumerate() {
        let single = classifier.probabilities(&[texts[i]]).unwrap().remove(0);
        for (label, want) in o["probabilities"].as_array().unwrap().iter().enumerate() {
            let want = want.as_f64().unwrap() as f32;
            assert!((single[label] - want).abs() < 1e-4, "{:?}: {} vs {want}", texts[i], single[label]);
            assert!((batched[i][label] - want).abs() < 1e-4, "{:?} batched: {} vs {want}", texts[i], batched[i][label]);
        }
    }
}

#[test]
#[ignore = "needs the models installed: run scripts/test.sh"]
fn results_follow_the_wire_contract() {
    let (mut classifier, _) = load();
    let love = Input::Text("I loved this movie".into());
    let hate = Input::Text("terrible film".into());
    let out = classifier.infer(&[&love, &hate]).unwrap();
    assert_eq!(out[0]["label"], "positive");
    assert_eq!(out[1]["label"], "negative");
    assert!(out[0]["score"].as_f64().unwrap() > 0.5);
    assert_eq!(out[0]["score"], out[0]["scores"]["positive"]);
    // Texts longer than max_tokens are truncated, not refused.
    let long = Input::Text("great ".repeat(1000));
    assert_eq!(classifier.infer(&[&long]).unwrap()[0]["label"], "positive");
}
