//! The sentiment model alone (tokenise + ONNX Runtime, one intra-op thread), at batch 1 and at
//! larger batches, in requests/s. Needs the models installed (scripts/setup.sh).
//!
//! Run: cargo bench --bench model

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use tidal::codec::Input;
use tidal::config::ServeConfig;
use tidal::models::{self, Manifest};

const TEXTS: &[&str] = &[
    "An absolute masterpiece, moving and beautifully acted.",
    "A boring, clumsy mess that wastes its talented cast.",
    "One of the best films of the year: funny, warm and wise.",
    "Worst two hours of my life. Avoid.",
    "The plot was fine, but the ending dragged on far too long for my taste.",
    "terrible film",
    "I loved this movie",
    "Not my cup of tea, though the soundtrack is lovely.",
];

fn sentiment(c: &mut Criterion) {
    let config = ServeConfig::default();
    models::init_onnxruntime(&config.onnxruntime_library()).expect("ONNX Runtime: run scripts/setup.sh");
    let manifest = Manifest::find("sentiment", None).expect("manifest");
    let mut model = models::load(&manifest, &config.model_dir()).expect("sentiment model: run scripts/setup.sh");
    let mut group = c.benchmark_group("sentiment");
    for batch in [1usize, 8, 32] {
        let inputs: Vec<Input> = (0..batch).map(|i| Input::Text(TEXTS[i % TEXTS.len()].to_string())).collect();
        let refs: Vec<&Input> = inputs.iter().collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("batch", batch), &refs, |b, refs| {
            b.iter(|| model.infer(refs).expect("inference"))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(8));
    targets = sentiment
}
criterion_main!(benches);
