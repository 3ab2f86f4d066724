//! The image models alone (all pre- and post-processing in Rust, ONNX Runtime with one intra-op
//! thread), at batch 1 and batched, plus what batching inside a model gains: several faces in one
//! embedder run, several text lines in one recogniser run. Needs the models and the face test
//! photos installed (scripts/setup.sh).
//!
//! Run: cargo bench --bench image_models

use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use tidal::codec::Input;
use tidal::config::{tidal_home, ServeConfig};
use tidal::models::face_match::{align, FaceMatcher};
use tidal::models::ocr::OcrPipeline;
use tidal::models::{self, Manifest, Model, ModelKind};
use tidal::vision::FloatImage;

fn model_dir() -> std::path::PathBuf {
    let config = ServeConfig::default();
    models::init_onnxruntime(&config.onnxruntime_library()).expect("ONNX Runtime: run scripts/setup.sh");
    config.model_dir()
}

fn photo(name: &str) -> image::RgbImage {
    image::open(tidal_home().join("testdata/faces").join(name)).expect("face photos: run scripts/setup.sh").into_rgb8()
}

fn page(name: &str) -> image::RgbImage {
    image::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ocr").join(name)).expect("page").into_rgb8()
}

fn face_match(c: &mut Criterion) {
    let manifest = Manifest::find("face-match", None).expect("manifest");
    let ModelKind::FaceMatch(spec) = &manifest.kind else { panic!("face-match kind") };
    let mut matcher = FaceMatcher::load(&manifest, spec, &model_dir()).expect("face models: run scripts/setup.sh");
    let photos = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"].map(photo);

    let mut group = c.benchmark_group("face-match");
    for batch in [1usize, 4] {
        let inputs: Vec<Input> =
            (0..batch).map(|i| Input::ImagePair(photos[i % 4].clone(), photos[(i + 1) % 4].clone())).collect();
        let refs: Vec<&Input> = inputs.iter().collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("pairs", batch), &refs, |b, refs| {
            b.iter(|| matcher.infer(refs).expect("inference"))
        });
    }
    group.finish();

    // The embedder alone: 8 aligned faces in one run vs one run per face.
    let refs: Vec<&image::RgbImage> = photos.iter().collect();
    let analyses = matcher.analyse(&refs).expect("analyse");
    let faces: Vec<FloatImage> = (0..8)
        .map(|i| {
            let face = analyses[i % 4].largest.as_ref().expect("a face");
            align(&FloatImage::from_rgb(&photos[i % 4]), face)
        })
        .collect();
    let mut group = c.benchmark_group("face-embed-8");
    group.throughput(Throughput::Elements(8));
    group.bench_function("one-run", |b| b.iter(|| matcher.embed(&faces).expect("embed")));
    group.bench_function("run-per-face", |b| {
        b.iter(|| faces.chunks(1).map(|f| matcher.embed(f).expect("embed")).count())
    });
    group.finish();
}

fn ocr(c: &mut Criterion) {
    let pages = ["sans-28.png", "serif-22.png", "mono-34.png", "sans-26-rotated.png"].map(page);
    let dir = model_dir();
    let manifest = Manifest::find("ocr", None).expect("manifest");
    let ModelKind::Ocr(spec) = &manifest.kind else { panic!("ocr kind") };

    let mut pipeline = OcrPipeline::load(&manifest, spec, &dir).expect("OCR models: run scripts/setup.sh");
    let mut group = c.benchmark_group("ocr");
    for batch in [1usize, 4] {
        let inputs: Vec<Input> = (0..batch).map(|i| Input::Image(pages[i % 4].clone())).collect();
        let refs: Vec<&Input> = inputs.iter().collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("images", batch), &refs, |b, refs| {
            b.iter(|| pipeline.infer(refs).expect("inference"))
        });
    }
    group.finish();

    // The four pages (10 lines) with the classifier and recogniser run line by line vs batched.
    let refs: Vec<&image::RgbImage> = pages.iter().collect();
    let mut group = c.benchmark_group("ocr-4-pages");
    group.throughput(Throughput::Elements(4));
    for rec_batch in [1usize, 6] {
        let mut spec = spec.clone();
        spec.rec_batch = rec_batch;
        let mut pipeline = OcrPipeline::load(&manifest, &spec, &dir).expect("OCR models");
        group.bench_function(BenchmarkId::new("rec_batch", rec_batch), |b| {
            b.iter(|| pipeline.read(&refs).expect("read"))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(6));
    targets = face_match, ocr
}
criterion_main!(benches);
