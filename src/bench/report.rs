//! The benchmark's report: every run in one table, the ratios the product is held to, a JSON
//! file for tooling, and a PNG chart (answers per second over time; latency percentiles).

use std::fmt::Write as _;
use std::path::Path;

use ab_glyph::FontVec;
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_line_segment_mut};
use imageproc::rect::Rect;
use serde::Serialize;

use super::measure::RunResult;
use crate::chart::{self, text};
use crate::error::{Error, Result};

/// Everything one `tidal bench` measured.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub limit: Option<RunResult>,
    /// The limit once more, after tidal's runs: this VM's speed drifts by tens of percent over
    /// minutes, so tidal is compared with the mean of the two.
    pub limit_after: Option<RunResult>,
    pub limit_batch1: Option<RunResult>,
    pub rest_capacity: Option<RunResult>,
    pub rest_overload: Option<RunResult>,
    pub python_stream: Option<RunResult>,
    /// Kafka Streams with the model in-process, one stream thread: capacity.
    pub kstreams: Option<RunResult>,
    /// ...with as many stream threads as tidal has workers (when more than one).
    pub kstreams_threads: Option<RunResult>,
    /// Kafka Streams open loop at fractions of its capacity.
    pub kstreams_latency: Vec<RunResult>,
    /// Kafka Streams at the load its latency is compared with tidal's.
    pub kstreams_compared: Option<RunResult>,
    /// tidal (exactly-once) offered `kstreams_compared`'s load.
    pub tidal_at_kstreams_load: Option<RunResult>,
    pub exactly_once: Option<RunResult>,
    pub at_least_once: Option<RunResult>,
    /// Open-loop runs at fractions of capacity, both delivery modes.
    pub latency: Vec<RunResult>,
    /// tidal (exactly-once) offered the load that overloads REST.
    pub tidal_at_rest_overload: Option<RunResult>,
    /// A long backlog drained by tidal exactly-once (`--steady`).
    pub steady: Option<RunResult>,
}

/// Answers in each whole minute of a run (a trailing partial minute is left out).
pub fn per_minute(run: &RunResult) -> Vec<f64> {
    run.per_second.chunks_exact(60).map(|minute| minute.iter().sum()).collect()
}

/// (max − min) / mean of `values`, or `None` for fewer than two.
pub fn spread(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    (mean > 0.0).then(|| (hi - lo) / mean)
}

/// One ratio with its target.
#[derive(Debug, Serialize)]
pub struct Ratio {
    pub name: &'static str,
    pub value: f64,
    pub target: f64,
}

impl Report {
    fn runs(&self) -> Vec<&RunResult> {
        [&self.limit, &self.limit_batch1, &self.rest_capacity, &self.rest_overload, &self.python_stream]
            .into_iter()
            .chain([&self.kstreams, &self.kstreams_threads])
            .chain([&self.exactly_once, &self.at_least_once, &self.limit_after])
            .flatten()
            .chain(self.kstreams_latency.iter())
            .chain(self.latency.iter())
            .chain(self.kstreams_compared.iter())
            .chain(self.tidal_at_kstreams_load.iter())
            .chain(self.tidal_at_rest_overload.iter())
            .chain(self.steady.iter())
            .collect()
    }

    /// The model alone, answers/s: the mean of the runs before and after tidal's, when both were made.
    pub fn limit_rate(&self) -> Option<f64> {
        let rates: Vec<f64> =
            [&self.limit, &self.limit_after].into_iter().flatten().map(|r| r.throughput).filter(|t| *t > 0.0).collect();
        (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
    }

    /// The model alone, CPU microseconds per answer: the mean of the runs before and after tidal's.
    pub fn limit_cpu(&self) -> Option<f64> {
        let cpus: Vec<f64> = [&self.limit, &self.limit_after]
            .into_iter()
            .flatten()
            .filter_map(|r| r.cpu_us_per_answer)
            .filter(|c| *c > 0.0)
            .collect();
        (!cpus.is_empty()).then(|| cpus.iter().sum::<f64>() / cpus.len() as f64)
    }

    /// The ratios that can be computed from the runs made.
    pub fn ratios(&self) -> Vec<Ratio> {
        let rate = |r: &Option<RunResult>| r.as_ref().map(|r| r.throughput).filter(|t| *t > 0.0);
        let mut ratios = Vec::new();
        let mut add = |name, a: Option<f64>, b: Option<f64>, target| {
            if let (Some(a), Some(b)) = (a, b) {
                ratios.push(Ratio { name, value: a / b, target });
            }
        };
        let cpu = |r: &Option<RunResult>| r.as_ref().and_then(|r| r.cpu_us_per_answer).filter(|c| *c > 0.0);
        add("tidal exactly-once / limit", rate(&self.exactly_once), self.limit_rate(), 0.95);
        // The same question asked of CPU time: the model's share of what tidal spends per answer.
        add("limit CPU / tidal CPU per answer", self.limit_cpu(), cpu(&self.exactly_once), 0.95);
        add("exactly-once / at-least-once", rate(&self.exactly_once), rate(&self.at_least_once), 0.95);
        add("tidal / Python stream consumer", rate(&self.exactly_once), rate(&self.python_stream), 1.4);
        add("tidal / REST at 1.5x its capacity", rate(&self.tidal_at_rest_overload), rate(&self.rest_overload), 2.0);
        add("tidal / Kafka Streams (capacity)", rate(&self.exactly_once), rate(&self.kstreams), 1.2);
        add("Kafka Streams CPU / tidal CPU per answer", cpu(&self.kstreams), cpu(&self.exactly_once), 1.0);
        let p99 = |r: &Option<RunResult>| r.as_ref().and_then(|r| r.latency_ms).map(|l| l.p99).filter(|p| *p > 0.0);
        add(
            "Kafka Streams p99 / tidal p99 at one load",
            p99(&self.kstreams_compared),
            p99(&self.tidal_at_kstreams_load),
            1.0,
        );
        ratios
    }

    /// The report as text: runs, then ratios.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<44} {:>8} {:>8} {:>8} {:>5} {:>6} {:>8} {:>8} {:>8} {:>8} {:>10}",
            "run",
            "offered",
            "requests",
            "answered",
            "dup",
            "errors",
            "req/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "cpu us/ans"
        );
        for run in self.runs() {
            let offered = run.offered.map_or("-".into(), |o| format!("{o:.0}"));
            let (p50, p95, p99) =
                run.latency_ms.map_or(("-".into(), "-".into(), "-".into()), |l| (ms(l.p50), ms(l.p95), ms(l.p99)));
            let cpu = run.cpu_us_per_answer.map_or("-".into(), |c| format!("{c:.1}"));
            let _ = writeln!(
                out,
                "{:<44} {:>8} {:>8} {:>8} {:>5} {:>6} {:>8.1} {:>8} {:>8} {:>8} {:>10}",
                run.name,
                offered,
                run.requests,
                run.results,
                run.duplicates,
                run.errors,
                run.throughput,
                p50,
                p95,
                p99,
                cpu
            );
        }
        let _ = writeln!(out, "\n{:<44} {:>8} {:>8}  ", "ratio", "value", "target");
        for ratio in self.ratios() {
            let verdict = if ratio.value >= ratio.target { "met" } else { "MISSED" };
            let _ = writeln!(out, "{:<44} {:>8.2} {:>7.2}x  {verdict}", ratio.name, ratio.value, ratio.target);
        }
        if let Some(steady) = &self.steady {
            let minutes = per_minute(steady);
            let listed: Vec<String> = minutes.iter().map(|m| format!("{m:.0}")).collect();
            match spread(&minutes) {
                Some(spread) => {
                    let verdict = if spread <= 0.02 { "met" } else { "MISSED" };
                    let _ = writeln!(
                        out,
                        "\nsteady: answers per minute {}; spread (max-min)/mean {:.1}% (target <= 2%)  {verdict}",
                        listed.join(" "),
                        spread * 100.0
                    );
                }
                None => {
                    let _ = writeln!(out, "\nsteady: fewer than two whole minutes; use --steady 10m");
                }
            }
        }
        out
    }

    /// Writes `report.json` (runs and ratios) into `dir`.
    pub fn write_json(&self, dir: &Path) -> Result<()> {
        let path = dir.join("report.json");
        let value = serde_json::json!({ "report": self, "ratios": self.ratios() });
        let text = serde_json::to_string_pretty(&value).unwrap_or_default();
        std::fs::write(&path, text).map_err(|e| Error::Io { path, source: e })
    }

    /// Writes `bench.png` into `dir`: answers per second over time for the throughput runs, and
    /// latency percentiles (log scale) for the open-loop runs.
    pub fn write_chart(&self, dir: &Path, font: Option<&FontVec>) -> Result<()> {
        let (width, height) = (1200u32, 900u32);
        let mut img = chart::canvas(width, height);
        let series: Vec<&RunResult> = [
            &self.limit,
            &self.exactly_once,
            &self.at_least_once,
            &self.python_stream,
            &self.kstreams,
            &self.rest_overload,
            &self.tidal_at_rest_overload,
            &self.steady,
        ]
        .into_iter()
        .flatten()
        .collect();
        draw_throughput(&mut img, &series, (70, 50, width - 260, 380), font);
        let open: Vec<&RunResult> =
            self.latency.iter().chain(&self.kstreams_latency).chain(&self.rest_overload).collect();
        draw_latency(&mut img, &open, (70, 500, width - 40, 820), font);
        chart::save(&img, &dir.join("bench.png"))
    }
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

const PALETTE: [Rgb<u8>; 8] = [
    Rgb([0, 0, 0]),
    Rgb([31, 119, 180]),
    Rgb([44, 160, 44]),
    Rgb([255, 127, 14]),
    Rgb([214, 39, 40]),
    Rgb([148, 103, 189]),
    Rgb([140, 86, 75]),
    Rgb([23, 190, 207]),
];

/// Lines of answers per second against seconds since each run started.
fn draw_throughput(img: &mut RgbImage, runs: &[&RunResult], frame: (u32, u32, u32, u32), font: Option<&FontVec>) {
    let (left, top, right, bottom) = (frame.0 as f32, frame.1 as f32, frame.2 as f32, frame.3 as f32);
    chart::axes(img, left, top, right, bottom);
    let max_y = runs.iter().flat_map(|r| r.per_second.iter()).fold(1.0f64, |a, &b| a.max(b)) * 1.1;
    let max_x = runs.iter().map(|r| r.per_second.len()).max().unwrap_or(1).max(2) as f64;
    let x = |t: f64| left + (right - left) * (t / max_x) as f32;
    let y = |v: f64| bottom - (bottom - top) * (v / max_y) as f32;
    for (i, run) in runs.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        // The last second is partial: leave it out.
        let full = &run.per_second[..run.per_second.len().saturating_sub(1)];
        for (t, pair) in full.windows(2).enumerate() {
            let (a, b) = (x(t as f64 + 0.5), x(t as f64 + 1.5));
            draw_line_segment_mut(img, (a, y(pair[0])), (b, y(pair[1])), colour);
            draw_line_segment_mut(img, (a, y(pair[0]) - 1.0), (b, y(pair[1]) - 1.0), colour);
        }
        text(img, font, frame.2 as i32 + 12, frame.1 as i32 + 22 * i as i32, 15.0, colour, &run.name);
    }
    let black = Rgb([0, 0, 0]);
    text(img, font, frame.0 as i32, frame.1 as i32 - 32, 20.0, black, "answers per second, each run from its start");
    text(img, font, 4, frame.1 as i32, 14.0, black, &format!("{:.0}", max_y / 1.1));
    text(img, font, 4, frame.3 as i32 - 14, 14.0, black, "0");
    text(img, font, frame.2 as i32 - 40, frame.3 as i32 + 6, 14.0, black, &format!("{max_x:.0} s"));
}

/// Grouped bars: p50, p95, p99 per run, on a log scale from 1 ms.
fn draw_latency(img: &mut RgbImage, runs: &[&RunResult], frame: (u32, u32, u32, u32), font: Option<&FontVec>) {
    let (left, top, right, bottom) = frame;
    let black = Rgb([0, 0, 0]);
    chart::axes(img, left as f32, top as f32, right as f32, bottom as f32);
    text(
        img,
        font,
        left as i32,
        top as i32 - 36,
        20.0,
        black,
        "latency, produce to committed answer (ms, log scale): p50 p95 p99",
    );
    let max_ms = runs.iter().filter_map(|r| r.latency_ms).map(|l| l.p99).fold(10.0f64, f64::max);
    let decades = max_ms.log10().ceil().max(1.0);
    let height = f64::from(bottom - top);
    let y = |v: f64| bottom as f64 - height * (v.max(1.0).log10() / decades);
    for d in 0..=decades as i32 {
        let at = y(10f64.powi(d)) as f32;
        draw_line_segment_mut(img, (left as f32 - 4.0, at), (right as f32, at), Rgb([230, 230, 230]));
        text(img, font, 4, at as i32 - 8, 14.0, black, &format!("{}", 10u64.pow(d as u32)));
    }
    let slot = (right - left) / runs.len().max(1) as u32;
    for (i, run) in runs.iter().enumerate() {
        let Some(l) = run.latency_ms else { continue };
        let x0 = left + i as u32 * slot + slot / 8;
        let bar = (slot * 3 / 4) / 3;
        for (k, v) in [l.p50, l.p95, l.p99].into_iter().enumerate() {
            let top_px = y(v) as i32;
            let h = (bottom as i32 - top_px).max(1) as u32;
            let colour = PALETTE[k + 1];
            draw_filled_rect_mut(
                img,
                Rect::at((x0 + k as u32 * bar) as i32, top_px).of_size(bar.max(2) - 1, h),
                colour,
            );
        }
        let label: String = run.name.replace("tidal ", "").chars().take(22).collect();
        text(img, font, x0 as i32, bottom as i32 + 6, 13.0, black, &label);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_whole_and_spread_is_relative() {
        let run = RunResult { per_second: vec![2.0; 150], ..RunResult::default() };
        assert_eq!(per_minute(&run), vec![120.0, 120.0]);
        assert_eq!(spread(&[100.0, 102.0, 98.0]), Some(0.04));
        assert_eq!(spread(&[5.0]), None);
    }

    #[test]
    fn ratios_need_both_sides() {
        let run = |t: f64| Some(RunResult { throughput: t, ..RunResult::default() });
        let report = Report { limit: run(200.0), exactly_once: run(190.0), ..Report::default() };
        let ratios = report.ratios();
        assert_eq!(ratios.len(), 1);
        assert_eq!(ratios[0].name, "tidal exactly-once / limit");
        assert!((ratios[0].value - 0.95).abs() < 1e-12);
    }

    #[test]
    fn cpu_per_answer_is_compared_kafka_streams_over_tidal() {
        let run = |throughput: f64, cpu: f64| {
            Some(RunResult { throughput, cpu_us_per_answer: Some(cpu), ..RunResult::default() })
        };
        let report = Report { kstreams: run(100.0, 12.0), exactly_once: run(100.0, 4.0), ..Report::default() };
        let ratio = report.ratios().into_iter().find(|r| r.name.contains("CPU")).expect("the CPU ratio");
        assert!((ratio.value - 3.0).abs() < 1e-12);
    }

    #[test]
    fn the_models_cpu_is_compared_with_tidals_per_answer() {
        let run = |cpu: f64| Some(RunResult { throughput: 10.0, cpu_us_per_answer: Some(cpu), ..RunResult::default() });
        let report =
            Report { limit: run(90.0), limit_after: run(110.0), exactly_once: run(125.0), ..Report::default() };
        assert_eq!(report.limit_cpu(), Some(100.0));
        let ratio = report.ratios().into_iter().find(|r| r.name.starts_with("limit CPU")).expect("the CPU ratio");
        assert!((ratio.value - 0.8).abs() < 1e-12);
    }

    #[test]
    fn tidal_is_compared_with_the_mean_of_the_limits_before_and_after() {
        let run = |t: f64| Some(RunResult { throughput: t, ..RunResult::default() });
        let report = Report { limit: run(40.0), limit_after: run(50.0), exactly_once: run(45.0), ..Report::default() };
        assert_eq!(report.limit_rate(), Some(45.0));
        assert!((report.ratios()[0].value - 1.0).abs() < 1e-12);
    }
}
