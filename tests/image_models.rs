//! The face-match and OCR pipelines (all Rust) against golden values from the Python reference
//! pipelines (`scripts/make_golden.py`; see tests/golden/README.md for how they were made).
#![cfg(feature = "broker-tests")]

use std::path::{Path, PathBuf};

use tidal::codec::Input;
use tidal::config::{tidal_home, ServeConfig};
use tidal::models::face_match::FaceMatcher;
use tidal::models::ocr::OcrPipeline;
use tidal::models::{self, Manifest, Model, ModelKind};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn golden(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(golden_dir().join(name)).unwrap()).unwrap()
}

fn model_dir() -> PathBuf {
    let config = ServeConfig::default();
    models::init_onnxruntime(&config.onnxruntime_library()).expect("ONNX Runtime (run scripts/setup.sh)");
    config.model_dir()
}

fn face_matcher() -> FaceMatcher {
    face_matcher_with(None)
}

/// The face matcher of the shipped manifest, with another `min_face_ratio` if given.
fn face_matcher_with(min_face_ratio: Option<f64>) -> FaceMatcher {
    let manifest = Manifest::find("face-match", None).unwrap();
    let ModelKind::FaceMatch(spec) = &manifest.kind else { panic!("face-match kind") };
    let mut spec = spec.clone();
    spec.min_face_ratio = min_face_ratio.unwrap_or(spec.min_face_ratio);
    FaceMatcher::load(&manifest, &spec, &model_dir()).expect("face models (run scripts/setup.sh)")
}

/// Faces the shipped detector counts in a photo: the reference's, except obama.jpg's second face,
/// under 5 % of the photo's shorter side and so below the shipped `min_face_ratio` (0.1).
fn shipped_face_count(name: &str, reference: u64) -> u64 {
    if name == "obama.jpg" {
        1
    } else {
        reference
    }
}

/// The OCR pipeline with the shipped settings, or with the reference's (rapidocr's defaults:
/// detector input's shorter side scaled to 736, recogniser runs of 6).
fn ocr_with(reference_settings: bool) -> OcrPipeline {
    let manifest = Manifest::find("ocr", None).unwrap();
    let ModelKind::Ocr(spec) = &manifest.kind else { panic!("ocr kind") };
    let mut spec = spec.clone();
    if reference_settings {
        spec.limit_type = models::LimitType::Min;
        spec.limit_side_len = 736;
        spec.rec_batch = 6;
    }
    OcrPipeline::load(&manifest, &spec, &model_dir()).expect("OCR models (run scripts/setup.sh)")
}

fn ocr() -> OcrPipeline {
    ocr_with(false)
}

/// The face_recognition package's test photos, installed by the set-up.
fn face_photo(name: &str) -> image::RgbImage {
    let path = tidal_home().join("testdata/faces").join(name);
    image::open(&path).unwrap_or_else(|e| panic!("{} ({e}): run scripts/setup.sh", path.display())).into_rgb8()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn face_embeddings_match_the_reference_pipeline() {
    let golden = golden("face.json");
    let mut matcher = face_matcher();
    let names = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"];
    let photos: Vec<image::RgbImage> = names.iter().map(|n| face_photo(n)).collect();
    let refs: Vec<&image::RgbImage> = photos.iter().collect();
    let analyses = matcher.analyse(&refs).unwrap();
    for (name, analysis) in names.iter().zip(&analyses) {
        let want = &golden["images"][name];
        let reference_faces = want["faces"].as_u64().unwrap();
        assert_eq!(analysis.faces as u64, shipped_face_count(name, reference_faces), "{name}: face count");
        let face = analysis.largest.as_ref().unwrap();
        let want_box: Vec<f64> = want["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let got_box = [face.x1, face.y1, face.x2, face.y2];
        // The detector reads its pyramid levels and crops from the photo itself, at the levels a
        // detector on the whole photo uses (fewer of them): boxes and embeddings agree with the
        // full-resolution reference.
        for (g, w) in got_box.iter().zip(&want_box) {
            assert!((g - w).abs() < 3.0, "{name}: box {got_box:?} vs reference {want_box:?}");
        }
        let want_emb: Vec<f32> =
            want["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let agreement = cosine(analysis.embedding.as_ref().unwrap(), &want_emb);
        println!("{name}: faces {}, box {got_box:.1?}, cosine to reference embedding {agreement:.5}", analysis.faces);
        assert!(agreement >= 0.99, "{name}: embedding cosine to the reference {agreement} < 0.99");
    }
    let emb = |i: usize| analyses[i].embedding.clone().unwrap();
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        let s = cosine(&emb(a), &emb(b));
        println!("{} vs {}: {s:.4}", names[a], names[b]);
        assert!(s >= 0.6, "same person {} / {}: {s}", names[a], names[b]);
    }
    for (a, name) in names.iter().enumerate().take(3) {
        let s = cosine(&emb(a), &emb(3));
        println!("{name} vs biden.jpg: {s:.4}");
        assert!(s <= 0.3, "different people {name} / biden: {s}");
    }
}

#[test]
fn face_match_results_follow_the_wire_contract() {
    let mut matcher = face_matcher();
    let same = Input::ImagePair(face_photo("obama.jpg"), face_photo("obama2.jpg"));
    let different = Input::ImagePair(face_photo("obama.jpg"), face_photo("biden.jpg"));
    let blank =
        Input::ImagePair(face_photo("obama.jpg"), image::RgbImage::from_pixel(200, 150, image::Rgb([200, 200, 200])));
    let out = matcher.infer(&[&same, &different, &blank]).unwrap();
    assert_eq!(out[0]["match"], true, "{}", out[0]);
    assert_eq!(out[1]["match"], false, "{}", out[1]);
    assert!(out[0]["similarity"].as_f64().unwrap() >= out[0]["threshold"].as_f64().unwrap());
    // obama.jpg holds a second, small face (see the next test); the largest is the one compared.
    assert_eq!(out[0]["faces_a"], 1);
    assert_eq!(out[0]["faces_b"], 1);
    assert_eq!(out[0]["face_a"]["box"].as_array().unwrap().len(), 4);
    assert_eq!(out[0]["face_a"]["landmarks"].as_array().unwrap().len(), 5);
    assert_eq!(out[2]["match"], false);
    assert!(out[2]["similarity"].is_null());
    assert_eq!(out[2]["faces_b"], 0);
    assert_eq!(out[2]["reason"], "no face found in image_b");
}

/// Character error rate: edit distance / reference length.
fn cer(got: &str, want: &str) -> f64 {
    let (g, w): (Vec<char>, Vec<char>) = (got.chars().collect(), want.chars().collect());
    let mut row: Vec<usize> = (0..=g.len()).collect();
    for i in 1..=w.len() {
        let mut previous = row[0];
        row[0] = i;
        for j in 1..=g.len() {
            let substitution = previous + usize::from(w[i - 1] != g[j - 1]);
            previous = row[j];
            row[j] = substitution.min(row[j] + 1).min(row[j - 1] + 1);
        }
    }
    row[g.len()] as f64 / w.len().max(1) as f64
}

#[test]
fn without_a_smallest_face_ratio_the_detector_counts_the_faces_the_reference_counts() {
    // min_face_ratio = 0: the pyramid goes down to min_face (20 px) and finds obama.jpg's small
    // second face, as the reference pipeline does; the shipped 0.1 skips the pyramid's largest
    // (costliest) levels and with them faces under a tenth of the photo.
    let golden = golden("face.json");
    let names = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"];
    let photos: Vec<image::RgbImage> = names.iter().map(|n| face_photo(n)).collect();
    let refs: Vec<&image::RgbImage> = photos.iter().collect();
    let every_face = face_matcher_with(Some(0.0)).analyse(&refs).unwrap();
    let shipped = face_matcher().analyse(&refs).unwrap();
    for (i, name) in names.iter().enumerate() {
        assert_eq!(every_face[i].faces as u64, golden["images"][name]["faces"].as_u64().unwrap(), "{name}");
        let (a, b) = (every_face[i].embedding.as_ref().unwrap(), shipped[i].embedding.as_ref().unwrap());
        assert!(cosine(a, b) > 0.97, "{name}: the largest face is the same face either way");
    }
    assert_eq!((every_face[0].faces, shipped[0].faces), (2, 1), "obama.jpg");
}

#[test]
fn ocr_reads_rendered_text_like_the_reference() {
    let golden = golden("ocr.json");
    let mut pipeline = ocr_with(true);
    let mut names: Vec<&String> = golden.as_object().unwrap().keys().collect();
    names.sort();
    let images: Vec<image::RgbImage> =
        names.iter().map(|n| image::open(golden_dir().join("ocr").join(n)).unwrap().into_rgb8()).collect();
    let refs: Vec<&image::RgbImage> = images.iter().collect();
    // All images in one call: crops of different images share recogniser runs.
    let read = pipeline.read(&refs).unwrap();
    for ((name, lines), image) in names.iter().zip(&read).zip(&images) {
        let case = &golden[name.as_str()];
        let truth: Vec<&str> = case["truth"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let got: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        let error = cer(&got.join("\n"), &truth.join("\n"));
        println!("{name}: {got:?} (CER {:.3})", error);
        assert_eq!(got, truth, "{name}: lines in reading order");
        for line in lines {
            assert!(line.confidence > 0.5 && line.confidence <= 1.0);
            for p in &line.corners {
                assert!(
                    p.x >= 0.0 && p.y >= 0.0 && p.x <= f64::from(image.width()) && p.y <= f64::from(image.height())
                );
            }
        }
        // Boxes within a few pixels of the reference's (same order when upright).
        if !case["rotated_180"].as_bool().unwrap() {
            for (line, want) in lines.iter().zip(case["reference_lines"].as_array().unwrap()) {
                let want: Vec<[f64; 2]> = want["box"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
                    .collect();
                for (p, w) in line.corners.iter().zip(&want) {
                    assert!(
                        (p.x - w[0]).abs() <= 4.0 && (p.y - w[1]).abs() <= 4.0,
                        "{name}: {:?} vs {want:?}",
                        line.corners
                    );
                }
            }
        }
    }
}

#[test]
fn ocr_with_the_shipped_settings_reads_the_same_text() {
    let golden = golden("ocr.json");
    let mut pipeline = ocr();
    let mut total_errors = 0.0;
    for (name, case) in golden.as_object().unwrap() {
        let image = image::open(golden_dir().join("ocr").join(name)).unwrap().into_rgb8();
        let lines = pipeline.read(&[&image]).unwrap().remove(0);
        let got: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        let truth: Vec<&str> = case["truth"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let error = cer(&got.join("\n"), &truth.join("\n"));
        println!("{name} (shipped settings): {got:?} (CER {error:.3})");
        total_errors += error;
        assert_eq!(got, truth, "{name}");
    }
    assert_eq!(total_errors, 0.0);
}

#[test]
fn ocr_results_follow_the_wire_contract() {
    let mut pipeline = ocr();
    let page = image::open(golden_dir().join("ocr/sans-28.png")).unwrap().into_rgb8();
    let blank = image::RgbImage::from_pixel(64, 64, image::Rgb([255, 255, 255]));
    let out = pipeline.infer(&[&Input::Image(page), &Input::Image(blank)]).unwrap();
    assert_eq!(out[0]["text"], "Invoice 2024-07-15\nTotal: $1,234.56\nHello World from OCR");
    let first = &out[0]["lines"][0];
    assert_eq!(first["text"], "Invoice 2024-07-15");
    assert_eq!(first["box"].as_array().unwrap().len(), 4);
    assert_eq!(out[1]["lines"].as_array().unwrap().len(), 0);
    assert_eq!(out[1]["text"], "");
}
