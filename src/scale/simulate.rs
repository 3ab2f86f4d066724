//! `tidal scale simulate`: replays a traffic trace through the real policies and damping with a
//! simple replica model, and reports a table and a chart, so that policies can be tuned before
//! production.
//!
//! The model: every `interval`, records arrive at the trace's rate, spread evenly over the
//! partitions; a replica processes up to `per_replica_rate` records/s, and the busiest replica
//! (the one with the most partitions) sets the pace, so 9 replicas on 16 partitions do what 8
//! do and replicas beyond the partitions idle; a replica added by a decision starts serving
//! `startup` later; a removed one stops at once. The backlog is what arrived and was not yet
//! processed; the lag the scaler observes adds what was processed but not yet committed
//! (`commit_delay` of the processing rate), as a real group's committed offsets trail its work.
use std::path::Path;
use std::time::Duration;

use image::Rgb;
use imageproc::drawing::draw_line_segment_mut;

use super::decide::{PolicyConfig, Scaler};
use super::policy::Observation;
use super::signals::{SignalRule, Signals};
use crate::chart;
use crate::error::{Error, Result};

/// The replica model's parameters.
#[derive(Debug, Clone)]
pub struct ReplicaModel {
    /// Records per second one replica processes.
    pub per_replica_rate: f64,
    pub partitions: u32,
    /// Time from a scale-up decision to the new replica serving.
    pub startup: Duration,
    /// Time between decisions.
    pub interval: Duration,
    /// Processing → offset commit; the observed lag includes this much of the processing rate.
    pub commit_delay: Duration,
}

impl ReplicaModel {
    /// Records per second `active` replicas process when the load is spread evenly over the
    /// partitions: the busiest replica, with ⌈partitions ÷ active⌉ of them, sets the pace (9
    /// replicas on 16 partitions do what 8 do), and replicas beyond the partitions idle.
    pub fn capacity(&self, active: u32) -> f64 {
        if active == 0 || self.partitions == 0 {
            return 0.0;
        }
        let busiest = self.partitions.div_ceil(active.min(self.partitions));
        f64::from(self.partitions) / f64::from(busiest) * self.per_replica_rate
    }
}

/// One simulated instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at: f64,
    pub ingest_rate: f64,
    pub lag: f64,
    /// Replicas decided (running or starting).
    pub replicas: u32,
    /// Replicas serving.
    pub active: u32,
    pub policy: &'static str,
}

/// A trace: (seconds, records per second), sorted by time; the rate holds until the next point.
pub type Trace = Vec<(f64, f64)>;

/// Reads `seconds,rate` lines (a header line and `#` comments are skipped).
pub fn read_trace(path: &Path) -> Result<Trace> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.into(), source })?;
    let mut trace = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (n == 0 && line.chars().any(|c| c.is_ascii_alphabetic())) {
            continue;
        }
        let parsed = line
            .split_once(',')
            .and_then(|(t, r)| Some((t.trim().parse::<f64>().ok()?, r.trim().parse::<f64>().ok()?)))
            .filter(|(t, r)| t.is_finite() && r.is_finite() && *r >= 0.0);
        match parsed {
            Some(point) => trace.push(point),
            None => {
                return Err(Error::Config(format!(
                    "{} line {}: expected `seconds,rate` (numbers, rate ≥ 0), got {line:?}",
                    path.display(),
                    n + 1
                )))
            }
        }
    }
    if trace.len() < 2 {
        return Err(Error::Config(format!("{}: a trace needs at least two points", path.display())));
    }
    trace.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(trace)
}

/// The built-in "match day": 10 min steady at `base`, a surge to 6× within one minute, 10 min
/// at the peak with bursts, a cliff back to `base` within 30 s, 10 min steady.
pub fn match_day(base: f64) -> Trace {
    let mut trace = vec![(0.0, base), (600.0, base)];
    for s in 1..=6 {
        trace.push((600.0 + 10.0 * f64::from(s), base * (1.0 + 5.0 * f64::from(s) / 6.0)));
    }
    for m in 0..10 {
        let t = 660.0 + 60.0 * f64::from(m);
        let burst = if m % 3 == 1 { 1.3 } else { 1.0 };
        trace.push((t, base * 6.0 * burst));
    }
    trace.push((1260.0, base * 6.0));
    trace.push((1290.0, base));
    trace.push((1890.0, base));
    trace
}

/// The built-in "flash spike": 10 min steady at `base`, 10× at once for 2 min, back to `base`
/// for 13 min (a push notification, a link on a front page).
pub fn flash_spike(base: f64) -> Trace {
    vec![(0.0, base), (600.0, base * 10.0), (720.0, base), (1500.0, base)]
}

/// The built-in "diurnal day" (24 h, one point a minute): night at 0.2×`base`, a morning ramp,
/// stores opening at 09:00 (4× within five minutes), a lunch dip 12:00–13:30 (2.5×), the
/// afternoon at 4×, an evening decline, night again.
pub fn diurnal(base: f64) -> Trace {
    let shape = [
        (0.0, 0.2),
        (6.0, 0.2),
        (8.75, 1.0),
        (9.0, 1.0),
        (9.0833, 4.0),
        (12.0, 4.0),
        (12.25, 2.5),
        (13.25, 2.5),
        (13.5, 4.0),
        (17.0, 4.0),
        (20.0, 1.0),
        (22.0, 0.2),
        (24.0, 0.2),
    ];
    (0..=24 * 60)
        .map(|minute| {
            let hour = f64::from(minute) / 60.0;
            let i = shape.iter().rposition(|(h, _)| *h <= hour).unwrap_or(0).min(shape.len() - 2);
            let ((h0, f0), (h1, f1)) = (shape[i], shape[i + 1]);
            let factor = f0 + (f1 - f0) * ((hour - h0) / (h1 - h0)).clamp(0.0, 1.0);
            (f64::from(minute) * 60.0, base * factor)
        })
        .collect()
}

/// The built-in traces by name.
pub const BUILTIN_TRACES: [&str; 3] = ["match-day", "diurnal", "flash-spike"];

/// A built-in trace at `base` records/s, if `name` is one.
pub fn builtin_trace(name: &str, base: f64) -> Option<Trace> {
    match name {
        "match-day" => Some(match_day(base)),
        "diurnal" => Some(diurnal(base)),
        "flash-spike" => Some(flash_spike(base)),
        _ => None,
    }
}

/// The trace's rate at `t` (step-wise).
fn rate_at(trace: &Trace, t: f64) -> f64 {
    trace.iter().take_while(|(at, _)| *at <= t).last().map_or(0.0, |(_, r)| *r)
}

/// A signal event of a trace: (seconds, topic, record).
pub type SignalEvent = (f64, String, serde_json::Value);

/// The match-day trace's signal stream: a wicket announced one minute before the surge.
pub fn match_day_events() -> Vec<SignalEvent> {
    vec![(540.0, "match.events".into(), serde_json::json!({"type": "wicket", "over": 31}))]
}

/// Runs the trace through the policies.
pub fn run(trace: &Trace, policies: &PolicyConfig, model: &ReplicaModel) -> Vec<Step> {
    run_with_signals(trace, policies, model, &[], &[])
}

/// Runs the trace through the policies and the signal rules, fed the trace's signal events.
pub fn run_with_signals(
    trace: &Trace,
    policies: &PolicyConfig,
    model: &ReplicaModel,
    rules: &[SignalRule],
    events: &[SignalEvent],
) -> Vec<Step> {
    let mut scaler = Scaler::new(policies.clone());
    let mut signals = Signals::new(rules.to_vec());
    let mut fed = 0;
    let dt = model.interval.as_secs_f64().max(0.1);
    let end = trace.last().map_or(0.0, |(t, _)| *t);
    let mut replicas = steady_replicas(model, rate_at(trace, 0.0), policies);
    let mut starting: Vec<(f64, u32)> = Vec::new();
    let mut active = replicas;
    let mut lag = 0.0f64;
    let mut steps = Vec::new();
    let mut t = 0.0;
    while t <= end {
        let rate = rate_at(trace, t);
        // New replicas whose start-up has elapsed begin serving.
        active += starting.iter().filter(|(ready, _)| *ready <= t).map(|(_, n)| n).sum::<u32>();
        starting.retain(|(ready, _)| *ready > t);
        let capacity = model.capacity(active);
        let arrived = rate * dt;
        let processed = (lag + arrived).min(capacity * dt);
        lag = lag + arrived - processed;
        let observation = Observation {
            at: t,
            total_lag: (lag + processed / dt * model.commit_delay.as_secs_f64()).round() as u64,
            ingest_rate: rate,
            processing_rate: processed / dt,
            partitions: model.partitions,
            max_partitions: 0,
            consumers: active,
            serving: active,
            replicas,
        };
        while fed < events.len() && events[fed].0 <= t {
            signals.record(&events[fed].1, &events[fed].2, t);
            fed += 1;
        }
        // The trace starts at midnight UTC: schedule windows apply at the trace's time of day.
        let seconds_of_day = (t as u64 % 86_400) as u32;
        let decision = scaler.decide_with_signal(&observation, seconds_of_day, None, signals.floor(t));
        if decision.replicas > replicas {
            starting.push((t + model.startup.as_secs_f64(), decision.replicas - replicas));
        } else if decision.replicas < replicas {
            // Stop starting replicas first, then running ones.
            let mut remove = replicas - decision.replicas;
            while remove > 0 {
                if let Some(last) = starting.last_mut() {
                    let n = last.1.min(remove);
                    last.1 -= n;
                    remove -= n;
                    if last.1 == 0 {
                        starting.pop();
                    }
                } else {
                    active = active.saturating_sub(remove);
                    remove = 0;
                }
            }
        }
        replicas = decision.replicas;
        steps.push(Step { at: t, ingest_rate: rate, lag, replicas, active, policy: decision.policy });
        t += dt;
    }
    steps
}

/// The replicas a run starts with: the fewest (within the bounds) whose capacity covers the
/// trace's first rate, as if the scaler had been running before the trace began. Starting from
/// `min_replicas` instead would count a start-up backlog that no configuration could avoid.
fn steady_replicas(model: &ReplicaModel, rate: f64, policies: &PolicyConfig) -> u32 {
    let (low, high) = (policies.min_replicas.max(1), policies.max_replicas.max(policies.min_replicas).max(1));
    (low..=high).find(|&n| model.capacity(n) >= rate).unwrap_or(high)
}

/// What a run cost and how long requests waited, for comparing configurations on one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub replica_seconds: f64,
    /// Seconds during which a new request's expected wait (lag ÷ serving capacity) exceeded `slo`.
    pub over_slo_seconds: f64,
    pub peak_lag: f64,
    /// Seconds from the first rise of the rate to the first moment the serving capacity covers
    /// the rate (None: never, or no rise).
    pub surge_to_enough: Option<f64>,
}

/// Compares one run against an SLO on the expected wait.
pub fn compare(steps: &[Step], model: &ReplicaModel, slo: Duration) -> Comparison {
    let dt = model.interval.as_secs_f64();
    let capacity = |s: &Step| model.capacity(s.active);
    let wait = |s: &Step| if s.lag <= 0.0 { 0.0 } else { s.lag / capacity(s).max(1e-9) };
    let base = steps.first().map_or(0.0, |s| s.ingest_rate);
    let rise = steps.iter().find(|s| s.ingest_rate > base * 1.05).map(|s| s.at);
    Comparison {
        replica_seconds: steps.iter().map(|s| f64::from(s.active) * dt).sum(),
        over_slo_seconds: steps.iter().filter(|s| wait(s) > slo.as_secs_f64()).count() as f64 * dt,
        peak_lag: steps.iter().map(|s| s.lag).fold(0.0, f64::max),
        surge_to_enough: rise
            .and_then(|r| steps.iter().find(|s| s.at >= r && capacity(s) >= s.ingest_rate).map(|s| s.at - r)),
    }
}

/// Summary figures of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub peak_lag: f64,
    pub peak_replicas: u32,
    /// Seconds from the first rise of the rate above its starting value to the first added replica.
    pub first_scale_up_after: Option<f64>,
    /// Seconds from the peak lag until lag is back under 1 % of it.
    pub drained_after: Option<f64>,
    /// Replica-seconds used.
    pub replica_seconds: f64,
}

pub fn summarize(steps: &[Step], interval: Duration) -> Summary {
    let dt = interval.as_secs_f64();
    let base = steps.first().map_or(0.0, |s| s.ingest_rate);
    let start_replicas = steps.first().map_or(0, |s| s.replicas);
    let rise = steps.iter().find(|s| s.ingest_rate > base * 1.05).map(|s| s.at);
    let first_up = rise.and_then(|r| steps.iter().find(|s| s.at >= r && s.replicas > start_replicas).map(|s| s.at - r));
    let (peak_at, peak_lag) =
        steps.iter().fold((0.0, 0.0f64), |(at, lag), s| if s.lag > lag { (s.at, s.lag) } else { (at, lag) });
    let drained = steps.iter().find(|s| s.at > peak_at && s.lag <= peak_lag * 0.01).map(|s| s.at - peak_at);
    Summary {
        peak_lag,
        peak_replicas: steps.iter().map(|s| s.replicas).max().unwrap_or(0),
        first_scale_up_after: first_up,
        drained_after: drained,
        replica_seconds: steps.iter().map(|s| f64::from(s.active) * dt).sum(),
    }
}

/// The run as CSV: `seconds,ingest_rate,lag,replicas,active,policy`.
pub fn to_csv(steps: &[Step]) -> String {
    let mut out = String::from("seconds,ingest_rate,lag,replicas,active,policy\n");
    for s in steps {
        out.push_str(&format!(
            "{:.0},{:.1},{:.0},{},{},{}\n",
            s.at, s.ingest_rate, s.lag, s.replicas, s.active, s.policy
        ));
    }
    out
}

/// Draws rate, lag and replicas over time as three stacked panels into a PNG. Labels need a
/// TrueType font: `font` or a common system path (DejaVu Sans); without one the chart has no text.
pub fn write_chart(steps: &[Step], path: &Path, font: Option<&Path>) -> Result<()> {
    draw_runs(&[("", steps)], path, font)
}

/// Colours of overlaid runs, in order.
const RUN_COLOURS: [Rgb<u8>; 4] = [Rgb([214, 39, 40]), Rgb([31, 119, 180]), Rgb([44, 160, 44]), Rgb([148, 103, 189])];

/// Draws several runs of one trace overlaid: the rate once, lag and replicas per run in the run's
/// colour (a single run also gets its serving replicas in grey).
pub fn draw_runs(runs: &[(&str, &[Step])], path: &Path, font: Option<&Path>) -> Result<()> {
    let (width, panel, margin) = (1000u32, 200u32, 40u32);
    let height = 3 * panel + 4 * margin;
    let mut img = chart::canvas(width, height);
    let font = chart::load_font(font);
    let all = || runs.iter().flat_map(|(_, steps)| steps.iter());
    let end = all().map(|s| s.at).fold(1.0f64, f64::max);
    type Series = (&'static str, fn(&Step) -> f64);
    let panels: [Series; 3] = [
        ("ingest rate (records/s)", |s| s.ingest_rate),
        ("lag (records)", |s| s.lag),
        ("replicas (decided; grey: serving)", |s| f64::from(s.replicas)),
    ];
    for (i, (title, value)) in panels.iter().enumerate() {
        let top = margin + i as u32 * (panel + margin);
        let (left, right, bottom) = (70.0f32, (width - 20) as f32, (top + panel) as f32);
        let max = all().map(value).fold(0.0f64, f64::max).max(1.0) * 1.1;
        chart::axes(&mut img, left, top as f32, right, bottom);
        let x = |t: f64| left + (right - left) * (t / end) as f32;
        let y = |v: f64| bottom - (bottom - top as f32) * (v / max) as f32;
        let mut line = |steps: &[Step], value: &dyn Fn(&Step) -> f64, colour: Rgb<u8>, thick: bool| {
            for pair in steps.windows(2) {
                let (a, b) = (value(&pair[0]), value(&pair[1]));
                draw_line_segment_mut(&mut img, (x(pair[0].at), y(a)), (x(pair[1].at), y(b)), colour);
                if thick {
                    draw_line_segment_mut(&mut img, (x(pair[0].at), y(a) - 1.0), (x(pair[1].at), y(b) - 1.0), colour);
                }
            }
        };
        let series: &[(&str, &[Step])] = if i == 0 { &runs[..1] } else { runs };
        if i == 2 && runs.len() == 1 {
            line(runs[0].1, &|s: &Step| f64::from(s.active), chart::GREY, false);
        }
        for (n, (_, steps)) in series.iter().enumerate() {
            let colour = if i == 0 { Rgb([31, 119, 180]) } else { RUN_COLOURS[n % RUN_COLOURS.len()] };
            line(steps, value, colour, true);
        }
        let font = font.as_ref();
        chart::text(&mut img, font, left as i32 + 8, top as i32 - 24, 18.0, chart::BLACK, title);
        chart::text(&mut img, font, 4, top as i32, 14.0, chart::BLACK, &format!("{:.0}", max / 1.1));
        chart::text(&mut img, font, 4, bottom as i32 - 14, 14.0, chart::BLACK, "0");
        if i == 2 {
            let label = format!("{end:.0} s");
            chart::text(&mut img, font, right as i32 - 90, bottom as i32 + 6, 14.0, chart::BLACK, &label);
        }
        if i == 1 && runs.len() > 1 {
            for (n, (name, _)) in runs.iter().enumerate() {
                let colour = RUN_COLOURS[n % RUN_COLOURS.len()];
                chart::text(&mut img, font, right as i32 - 260, top as i32 + 4 + 18 * n as i32, 16.0, colour, name);
            }
        }
    }
    chart::save(&img, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::damping::DampingConfig;
    use crate::scale::policy::{LagPolicy, RatePolicy};

    fn model() -> ReplicaModel {
        ReplicaModel {
            per_replica_rate: 100.0,
            partitions: 8,
            startup: Duration::from_secs(10),
            interval: Duration::from_secs(5),
            commit_delay: Duration::from_secs(1),
        }
    }

    fn policies() -> PolicyConfig {
        PolicyConfig {
            min_replicas: 1,
            max_replicas: 8,
            lag: Some(LagPolicy { lag_threshold: 500, activation_lag_threshold: 1, allow_idle_consumers: false }),
            rate: Some(RatePolicy {
                per_replica_rate: Some(100.0),
                headroom: 0.2,
                target_drain: Duration::from_secs(60),
            }),
            damping: DampingConfig { stabilization: Duration::from_secs(120), ..DampingConfig::default() },
            ..PolicyConfig::default()
        }
    }

    #[test]
    fn a_surge_adds_replicas_drains_and_gives_them_back() {
        let steps = run(&match_day(80.0), &policies(), &model());
        let summary = summarize(&steps, model().interval);
        assert!(summary.peak_replicas >= 5, "{summary:?}");
        assert!(summary.first_scale_up_after.is_some_and(|s| s <= 15.0), "{summary:?}");
        assert!(summary.drained_after.is_some(), "{summary:?}");
        let last = steps.last().unwrap();
        assert_eq!(last.replicas, 1, "back to the minimum after the cliff");
        assert!(last.lag < 1.0);
    }

    #[test]
    fn without_scaling_the_lag_grows_without_bound() {
        let fixed = PolicyConfig { min_replicas: 1, max_replicas: 1, ..policies() };
        let steps = run(&match_day(80.0), &fixed, &model());
        let summary = summarize(&steps, model().interval);
        assert!(summary.peak_lag > 100_000.0, "{summary:?}");
    }

    #[test]
    fn comparison_counts_seconds_over_the_slo_and_the_time_to_enough_capacity() {
        let step = |at: f64, rate: f64, lag: f64, active: u32| Step {
            at,
            ingest_rate: rate,
            lag,
            replicas: active,
            active,
            policy: "lag",
        };
        // 100/s per replica, 8 partitions, 5 s steps: waits of 0, 3, 12 and 0.75 s; capacity covers
        // the rate at 15 s (4 replicas, 2 partitions each: 400/s).
        let steps = [
            step(0.0, 50.0, 0.0, 1),
            step(5.0, 300.0, 300.0, 1),
            step(10.0, 300.0, 1200.0, 1),
            step(15.0, 300.0, 300.0, 4),
        ];
        let c = compare(&steps, &model(), Duration::from_secs(2));
        assert_eq!(c.over_slo_seconds, 10.0, "two steps over 2 s");
        assert_eq!(c.surge_to_enough, Some(10.0));
        assert_eq!((c.replica_seconds, c.peak_lag), (35.0, 1200.0));
        // 3 replicas on 8 partitions: the busiest has 3, so they pace as 8/3 replicas would.
        assert!((model().capacity(3) - 800.0 / 3.0).abs() < 1e-9 && model().capacity(20) == 800.0);
    }

    #[test]
    fn a_latency_slo_keeps_waits_shorter_than_the_keda_equivalent_on_match_day_for_little_more() {
        use crate::scale::policy::LatencyPolicy;
        let model =
            ReplicaModel { per_replica_rate: 40.0, partitions: 16, startup: Duration::from_secs(30), ..model() };
        // As deploy/kubernetes/keda/scale.toml configures the KEDA-equivalent scaler.
        let lag_only = PolicyConfig {
            max_replicas: 16,
            lag: Some(LagPolicy { lag_threshold: 200, activation_lag_threshold: 1, allow_idle_consumers: false }),
            rate: None,
            damping: DampingConfig { stabilization: Duration::from_secs(300), max_step: 0, ..DampingConfig::default() },
            ..PolicyConfig::default()
        };
        let latency = LatencyPolicy {
            target: Duration::from_secs(5),
            percentile: 0.95,
            window: Duration::from_secs(60),
            service_time: Duration::ZERO,
        };
        let with_slo = PolicyConfig { latency: Some(latency), ..lag_only.clone() };
        let slo = Duration::from_secs(5);
        let trace = match_day(60.0);
        let (a, b) = (
            compare(&run(&trace, &lag_only, &model), &model, slo),
            compare(&run(&trace, &with_slo, &model), &model, slo),
        );
        assert!(b.over_slo_seconds < a.over_slo_seconds, "lag only {a:?}, with the SLO {b:?}");
        assert!(b.replica_seconds <= a.replica_seconds * 1.10, "lag only {a:?}, with the SLO {b:?}");
    }

    #[test]
    fn built_in_traces_have_their_shapes() {
        let spike = flash_spike(10.0);
        assert_eq!((rate_at(&spike, 599.0), rate_at(&spike, 600.0), rate_at(&spike, 720.0)), (10.0, 100.0, 10.0));
        let day = diurnal(100.0);
        assert_eq!(day.len(), 24 * 60 + 1);
        let at = |h: f64| rate_at(&day, h * 3600.0);
        assert!((at(3.0) - 20.0).abs() < 1e-9 && (at(10.0) - 400.0).abs() < 1e-9 && (at(12.75) - 250.0).abs() < 1e-9);
        assert!(BUILTIN_TRACES.iter().all(|name| builtin_trace(name, 1.0).is_some()));
    }

    #[test]
    fn traces_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("t.csv");
        std::fs::write(&good, "seconds,rate\n0,10\n# spike\n60,50\n").unwrap();
        assert_eq!(read_trace(&good).unwrap(), vec![(0.0, 10.0), (60.0, 50.0)]);
        let bad = dir.path().join("b.csv");
        std::fs::write(&bad, "0,10\n5;7\n").unwrap();
        assert!(read_trace(&bad).unwrap_err().to_string().contains("line 2"));
    }

    #[test]
    fn the_chart_is_a_png() {
        let steps = run(&match_day(50.0), &policies(), &model());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.png");
        write_chart(&steps, &path, None).unwrap();
        let image = image::open(&path).unwrap();
        assert_eq!((image.width(), image.height()), (1000, 760));
    }
}
