//! The sentiment model run by tidal (Rust tokenizers + ONNX Runtime via `ort`) against the
//! reference outputs written at set-up by Python tokenizers + ONNX Runtime: the float model's
//! (reference.json, by its build) and the int8 model's served by default (int8.json, by the
//! quantizer).
#![cfg(feature = "broker-tests")]

use std::path::PathBuf;

use tidal::codec::Input;
use tidal::config::ServeConfig;
use tidal::models::{self, Manifest, Model, ModelKind, TextClassifier};

/// The float model (`models/fp32`) and its build's figures and reference outputs.
fn fp32() -> (TextClassifier, serde_json::Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fp32");
    load_from(Some(&dir), "reference.json")
}

/// The built-in sentiment model (static int8) and the quantizer's figures and reference outputs.
fn int8() -> (TextClassifier, serde_json::Value) {
    load_from(None, "int8.json")
}

/// The sentiment model of the manifests in `manifest_dir` (None: the built-in one), and the
/// JSON file `figures` beside its files.
fn load_from(manifest_dir: Option<&std::path::Path>, figures: &str) -> (TextClassifier, serde_json::Value) {
    let config = ServeConfig::default();
    models::init_onnxruntime(&config.onnxruntime_library()).expect("ONNX Runtime (run scripts/setup.sh)");
    let manifest = Manifest::find("sentiment", manifest_dir).unwrap();
    let ModelKind::TextClassification(spec) = &manifest.kind else { panic!("sentiment is a text classifier") };
    let model_dir: PathBuf = config.model_dir();
    let classifier = TextClassifier::load(&manifest, spec, &model_dir).expect("sentiment model (run scripts/setup.sh)");
    let path = model_dir.join("sentiment").join(figures);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", path.display()));
    (classifier, serde_json::from_str(&text).unwrap())
}

#[test]
fn fp32_outputs_match_the_python_reference() {
    let (mut classifier, reference) = fp32();
    let outputs = reference["outputs"].as_array().unwrap();
    let texts: Vec<&str> = outputs.iter().map(|o| o["text"].as_str().unwrap()).collect();
    // Token ids must be the same as the Python tokenizer's.
    let tokens = classifier.tokenize(&texts).unwrap();
    for (o, ids) in outputs.iter().zip(&tokens) {
        let want: Vec<i64> = o["input_ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(ids, &want, "tokens of {:?}", o["text"]);
    }
    assert_probabilities_match(&mut classifier, outputs);
}

#[test]
fn int8_outputs_match_the_python_reference() {
    let (mut classifier, reference) = int8();
    let outputs = reference["outputs"].as_array().expect("int8.json holds reference outputs (run scripts/setup.sh)");
    assert!(outputs.len() >= 4, "{} reference sentences", outputs.len());
    assert_probabilities_match(&mut classifier, outputs);
}

/// One at a time and as one padded batch, tidal's probabilities are within 1e-4 of `outputs`'.
fn assert_probabilities_match(classifier: &mut TextClassifier, outputs: &[serde_json::Value]) {
    let texts: Vec<&str> = outputs.iter().map(|o| o["text"].as_str().unwrap()).collect();
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
fn results_follow_the_wire_contract() {
    let (mut classifier, _) = int8();
    let love = Input::Text("I loved this movie".into());
    let hate = Input::Text("terrible film".into());
    let out = classifier.infer(&[&love, &hate]).unwrap();
    assert_eq!(out[0]["label"], "positive");
    assert_eq!(out[1]["label"], "negative");
    assert!(out[0]["score"].as_f64().unwrap() > 0.5);
    assert_eq!(out[0]["score"], out[0]["scores"]["positive"]);
    // Texts longer than max_tokens are truncated to max_tokens, not refused. (A natural review:
    // one sentence repeated to the limit is far from anything the head was trained on.)
    let text = "I went in with low expectations and came out delighted. The performances are superb \
        across the board, the script is sharp and often very funny, and the director keeps the pace \
        brisk without ever losing sight of the characters. The photography is gorgeous, the score \
        is moving, and the final act earns every one of its tears. It is the kind of film that \
        reminds you why you fell in love with movies in the first place. The supporting cast \
        deserves special praise: every small part is played with wit and warmth, and the two leads \
        share a chemistry that feels effortless. Years from now people will still be quoting its \
        best lines, and rightly so.";
    assert_eq!(classifier.tokenize(&[text]).unwrap()[0].len(), 128);
    assert_eq!(classifier.infer(&[&Input::Text(text.into())]).unwrap()[0]["label"], "positive");
}

#[test]
fn fp32_heldout_accuracy_through_tidal_matches_the_build() {
    // The held-out 20 % of the Rotten Tomatoes split, classified by tidal's tokenizer and session
    // (length-grouped batches of 32, as a worker runs them): the figure the build reported, and
    // at least 85 %.
    let (mut classifier, reference) = fp32();
    let rows = heldout();
    let (correct, accuracy) = heldout_accuracy(&mut classifier, &rows);
    let built = reference["build"]["heldout_accuracy"].as_f64().unwrap();
    println!("held-out accuracy through tidal: {accuracy:.4} ({correct}/{}); build reported {built:.4}", rows.len());
    assert!((accuracy - built).abs() <= 2.0 / rows.len() as f64, "tidal {accuracy} vs build {built}");
    assert!(accuracy >= 0.85, "held-out accuracy {accuracy} is below 85 %");
}

/// The held-out 20 % of the Rotten Tomatoes split the build set aside.
fn heldout() -> Vec<serde_json::Value> {
    let model_dir = ServeConfig::default().model_dir();
    let heldout = std::fs::read_to_string(model_dir.join("sentiment/heldout.jsonl")).expect("heldout.jsonl");
    let rows: Vec<serde_json::Value> = heldout.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(rows.len() > 2000, "held-out split has {} rows", rows.len());
    rows
}

/// Correct answers and accuracy over `rows`, in batches of 32 as a worker runs them.
fn heldout_accuracy(classifier: &mut TextClassifier, rows: &[serde_json::Value]) -> (usize, f64) {
    let mut correct = 0;
    for chunk in rows.chunks(32) {
        let inputs: Vec<Input> = chunk.iter().map(|r| Input::Text(r["text"].as_str().unwrap().into())).collect();
        let refs: Vec<&Input> = inputs.iter().collect();
        let results = classifier.infer(&refs).unwrap();
        correct += chunk.iter().zip(&results).filter(|(row, result)| row["label"] == result["label"]).count();
    }
    (correct, correct as f64 / rows.len() as f64)
}

#[test]
fn the_int8_model_gives_a_text_the_same_probabilities_whatever_its_batch() {
    // Static int8: every activation scale is a constant of the graph, so nothing a batch-mate
    // holds can move a text's result (dynamic int8 moved it by up to 0.02).
    let (mut classifier, _) = int8();
    let rows = heldout();
    let texts: Vec<&str> = rows[..32].iter().map(|r| r["text"].as_str().unwrap()).collect();
    let longest = *texts.iter().max_by_key(|t| t.len()).unwrap();
    let lengths: Vec<usize> = classifier.tokenize(&texts).unwrap().iter().map(Vec::len).collect();
    assert!(lengths.iter().max().unwrap() > &(3 * lengths.iter().min().unwrap()), "mixed lengths: {lengths:?}");
    let together = classifier.probabilities(&texts).unwrap();
    let mut worst = 0.0f32;
    for (i, text) in texts.iter().enumerate() {
        let alone = classifier.probabilities(&[text]).unwrap().remove(0);
        let padded = classifier.probabilities(&[longest, text]).unwrap().remove(1);
        for label in 0..alone.len() {
            worst = worst.max((alone[label] - together[i][label]).abs()).max((alone[label] - padded[label]).abs());
        }
    }
    println!("int8: largest difference alone / in a batch of 32 / after padding: {worst:e}");
    assert!(worst <= 1e-4, "a text's int8 probabilities moved by {worst} with its batch");
}

#[test]
fn the_int8_model_keeps_the_accuracy_bar() {
    let (mut classifier, figures) = int8();
    let fp32 = figures["heldout_accuracy_fp32"].as_f64().unwrap();
    let quantizer = figures["heldout_accuracy_int8"].as_f64().unwrap();
    let rows = heldout();
    let (correct, accuracy) = heldout_accuracy(&mut classifier, &rows);
    println!(
        "int8 held-out accuracy through tidal: {accuracy:.4} ({correct}); quantizer {quantizer:.4}; fp32 {fp32:.4}"
    );
    assert!((accuracy - quantizer).abs() <= 2.0 / rows.len() as f64, "tidal {accuracy} vs quantizer {quantizer}");
    assert!(accuracy >= 0.865, "int8 held-out accuracy {accuracy} is below 86.5 %");
    assert!(accuracy >= fp32 - 0.01, "int8 {accuracy} is more than a point below fp32 {fp32}");
}
