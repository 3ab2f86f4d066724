//! A backlog of 12-megapixel photos (face pairs and document pages) through `tidal serve` with two
//! workers: the processor's resident memory, sampled all along, stays under the bound the README
//! documents, and every request is answered exactly once (a real broker; scripts/test.sh runs it).
//!
//! Bound: peak RSS ≤ idle RSS (models loaded) + workers × (4 × batch.max_bytes + 5 × the largest
//! decoded request): per worker, the batch's records, the pixels decoded for one model run,
//! librdkafka's prefetch queue and producer queue each stay within `batch.max_bytes`; the request
//! that crosses the budget and a model's float working copy of one image come on top.
#![cfg(feature = "broker-tests")]

mod common;

use std::collections::HashMap;
use std::io::{Cursor, Write};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Fixture, Reader};
use image::{imageops, Rgb, RgbImage};

const WIDTH: u32 = 4000;
const HEIGHT: u32 = 3000;
const PAIRS: usize = 100;
const PAGES: usize = 60;
const WORKERS: usize = 2;
const MAX_BYTES: usize = 32 << 20;

fn face_photo(name: &str) -> RgbImage {
    let path = tidal::config::tidal_home().join("testdata/faces").join(name);
    image::open(&path).unwrap_or_else(|e| panic!("{} ({e}): run scripts/setup.sh", path.display())).to_rgb8()
}

/// A 12-megapixel scene (a gradient with some texture) with `inset`, scaled by `zoom`, pasted in.
fn scene(inset: &RgbImage, zoom: u32, x: i64, y: i64, tint: u8) -> Vec<u8> {
    let mut canvas = RgbImage::from_fn(WIDTH, HEIGHT, |px, py| {
        let ripple = ((px / 7 + py / 5) % 9) as u8;
        Rgb([(px * 200 / WIDTH) as u8 + ripple, (py * 180 / HEIGHT) as u8 + tint / 4, 90 + ripple * 3])
    });
    let scaled = imageops::resize(inset, inset.width() * zoom, inset.height() * zoom, imageops::FilterType::Triangle);
    imageops::overlay(&mut canvas, &scaled, x, y);
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80).encode_image(&canvas).unwrap();
    out.into_inner()
}

#[test]
fn a_backlog_of_large_photos_keeps_memory_bounded_and_is_answered_exactly_once() {
    let fx = Fixture::for_model("photos", "face-match", 4, "");
    let ocr_requests = format!("{}.requests.ocr", fx.prefix);
    let ocr_results = format!("{}.results.ocr", fx.prefix);
    fx.create_topic(&ocr_requests, 4);
    fx.create_topic(&ocr_results, 4);
    fx.set_topic_config(&ocr_requests, "max.message.bytes", "12582912");
    fx.set_workers(WORKERS);
    fx.edit_config(|c| c.replace("models = [\"face-match\"]", "models = [\"face-match\", \"ocr\"]"));

    // The models' share of the bound, measured before anything is produced (the idle processor
    // is in a group of its own and would otherwise read the backlog too).
    let idle = models_rss(&fx, &format!("{}-idle", fx.prefix));

    // Four distinct photos of each kind (the bytes differ; ids make each request unique).
    let obama = face_photo("obama.jpg");
    let biden = face_photo("biden.jpg");
    let people = [
        ("obama", scene(&obama, 2, 900, 700, 10)),
        ("obama", scene(&obama, 3, 2000, 400, 60)),
        ("biden", scene(&biden, 2, 1500, 1200, 30)),
        ("biden", scene(&biden, 3, 300, 500, 90)),
    ];
    let page_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ocr/sans-28.png");
    let page = image::open(&page_path).unwrap().to_rgb8();
    let white = RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([255, 255, 255]));
    let pages: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let mut canvas = white.clone();
            imageops::overlay(
                &mut canvas,
                &imageops::resize(&page, page.width() * 4, page.height() * 4, imageops::FilterType::Triangle),
                200 + 300 * i,
                400 + 500 * i,
            );
            let mut out = Cursor::new(Vec::new());
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85).encode_image(&canvas).unwrap();
            out.into_inner()
        })
        .collect();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);

    let mut same_person: HashMap<String, bool> = HashMap::new();
    let mut face_records = Vec::new();
    for i in 0..PAIRS {
        let (a, b) = (&people[i % 4], &people[(i / 4 + 1) % 4]);
        let id = format!("pair{i}");
        same_person.insert(id.clone(), a.0 == b.0);
        let value = serde_json::json!({"id": id, "image_a": b64(&a.1), "image_b": b64(&b.1)}).to_string();
        face_records.push((Some(id), Some(value.into_bytes())));
    }
    fx.produce(&face_records);
    drop(face_records);
    let images: Vec<(String, &[u8])> =
        (0..PAGES).map(|i| (format!("page{i}"), pages[i % pages.len()].as_slice())).collect();
    common::produce_raw_images(&fx.brokers, &ocr_requests, "image/jpeg", &images);

    let mut server = fx.spawn("a");
    let pid = server.id();
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let started = Instant::now();
    let mut faces = Reader::new(&fx.results(), true);
    let mut ocr = Reader::new(&ocr_results, true);
    let until = started + Duration::from_secs(600);
    while (faces.records.len() < PAIRS || ocr.records.len() < PAGES) && Instant::now() < until {
        faces.poll_for(Duration::from_millis(100));
        ocr.poll_for(Duration::from_millis(100));
        if let Some(rss) = common::rss_mib(pid) {
            samples.push((started.elapsed().as_secs_f64(), rss));
        }
    }
    faces.poll_for(Duration::from_secs(3));
    ocr.poll_for(Duration::from_secs(1));
    let took = started.elapsed();
    let mut dlq = Reader::new(&fx.dlq(), true);
    dlq.poll_for(Duration::from_secs(2));
    common::terminate(&mut server, Duration::from_secs(60));

    let peak = samples.iter().map(|s| s.1).fold(0.0, f64::max);
    // Largest decoded request: a pair of 12-megapixel RGB images.
    let largest_decoded_mib = 2.0 * f64::from(WIDTH * HEIGHT) * 3.0 / (1 << 20) as f64;
    let per_worker = 4.0 * (MAX_BYTES >> 20) as f64 + 5.0 * largest_decoded_mib;
    let bound = idle + WORKERS as f64 * per_worker;
    let line = format!(
        "photo backlog: {PAIRS} face pairs + {PAGES} pages of {WIDTH}x{HEIGHT}, {WORKERS} workers, {:.0} s; RSS \
         start {:.0} MiB, peak {peak:.0} MiB, end {:.0} MiB; models alone {idle:.0} MiB; bound {bound:.0} MiB",
        took.as_secs_f64(),
        samples.first().map_or(0.0, |s| s.1),
        samples.last().map_or(0.0, |s| s.1),
    );
    eprintln!("{line}");
    if let Ok(path) = std::env::var("TIDAL_FAULT_REPORT") {
        let answered = faces.records.len() + ocr.records.len();
        let row = serde_json::json!({
            "scenario": format!("photo backlog, 12 MP, {WORKERS} workers"), "requests": PAIRS + PAGES,
            "results": answered, "duplicates": 0, "missing": (PAIRS + PAGES).saturating_sub(answered), "unexpected": 0,
            "rss_start_mib": samples.first().map(|s| s.1), "rss_max_mib": peak,
            "rss_end_mib": samples.last().map(|s| s.1), "bound_mib": bound, "all_answered_s": took.as_secs_f64(),
        });
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        writeln!(file, "{row}").unwrap();
    }
    assert!(dlq.records.is_empty(), "dead letters: {:?}", dlq.records.iter().map(|r| &r.headers).collect::<Vec<_>>());
    let ids: Vec<(String, String)> = same_person.keys().map(|id| (id.clone(), String::new())).collect();
    common::assert_exactly_once(&faces, &ids);
    for record in &faces.records {
        let v = record.json();
        let id = v["id"].as_str().unwrap();
        assert_eq!(v["result"]["match"], same_person[id], "{id}: {}", v["result"]);
    }
    let page_ids: Vec<(String, String)> = (0..PAGES).map(|i| (format!("page{i}"), String::new())).collect();
    common::assert_exactly_once(&ocr, &page_ids);
    for record in &ocr.records {
        let text = record.json()["result"]["text"].as_str().unwrap_or_default().to_string();
        assert!(text.contains("Invoice 2024-07-15"), "{text}");
    }
    assert!(peak <= bound, "{line}");
}

/// RSS of a processor with the same models and workers once it has loaded them and joined a
/// group with nothing to read: the models' share of the bound.
fn models_rss(fx: &Fixture, app: &str) -> f64 {
    let config = std::fs::read_to_string(&fx.config_path).unwrap().replacen(
        &format!("app = \"{}\"", fx.prefix),
        &format!("app = \"{app}\""),
        1,
    );
    let path = fx.dir.path().join("idle.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = common::Server(
        common::tidal()
            .args(["serve", "--config"])
            .arg(&path)
            .args(["--instance", "idle"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(15));
    let rss = common::rss_mib(child.id()).unwrap_or(0.0);
    common::terminate(&mut child, Duration::from_secs(30));
    rss
}
