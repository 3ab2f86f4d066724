//! CPU time a target process spends per answer. On a small machine shared with the broker, the
//! load generator and the reader, a drain rate says as much about the scheduler as about the
//! target; the CPU a target burns per answer (all its threads: the JVM's collector and Kafka
//! clients' network threads count as much as tidal's librdkafka threads) says which side is
//! cheaper, whatever else runs.
//!
//! A sampler thread reads the process's user + system time from `/proc/<pid>/stat` every few
//! milliseconds; the CPU spent between two instants is interpolated from the samples around them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often the process's CPU time is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Samples one process's CPU time until dropped.
pub struct CpuMeter {
    samples: Arc<Mutex<Vec<(Instant, f64)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CpuMeter {
    /// Starts sampling `pid`. Where `/proc` cannot be read (not Linux, process gone), the meter
    /// holds no samples and `seconds_between` says `None`.
    pub fn start(pid: u32) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (into, stopping) = (Arc::clone(&samples), Arc::clone(&stop));
        let ticks_per_second = clock_ticks_per_second();
        let thread = thread::Builder::new()
            .name("bench-cpu".into())
            .spawn(move || {
                let path = format!("/proc/{pid}/stat");
                while !stopping.load(Ordering::Relaxed) {
                    let Some(ticks) = std::fs::read_to_string(&path).ok().as_deref().and_then(cpu_ticks) else {
                        return;
                    };
                    if let Ok(mut samples) = into.lock() {
                        samples.push((Instant::now(), ticks as f64 / ticks_per_second));
                    }
                    thread::sleep(SAMPLE_EVERY);
                }
            })
            .ok();
        CpuMeter { samples, stop, thread }
    }

    /// CPU seconds the process spent between `from` and `to`, interpolated between samples
    /// (waiting for the sample after `to` if it is not taken yet); `None` when the samples do
    /// not cover both instants.
    pub fn seconds_between(&self, from: Instant, to: Instant) -> Option<f64> {
        let waited_for = Instant::now().max(to) + SAMPLE_EVERY * 5;
        loop {
            {
                let samples = self.samples.lock().ok()?;
                if samples.last().is_some_and(|(t, _)| *t >= to) || Instant::now() > waited_for {
                    return Some(interpolate(&samples, to)? - interpolate(&samples, from)?);
                }
            }
            thread::sleep(SAMPLE_EVERY / 2);
        }
    }
}

impl Drop for CpuMeter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// User + system time (fields 14 and 15, in clock ticks) of a `/proc/<pid>/stat` line. The
/// command name (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // field 3 is the first after ')'
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// The CPU seconds at `at`, linear between the samples around it.
fn interpolate(samples: &[(Instant, f64)], at: Instant) -> Option<f64> {
    let after = samples.iter().position(|(t, _)| *t >= at)?;
    let (t1, c1) = samples[after];
    if after == 0 {
        return (t1 == at).then_some(c1);
    }
    let (t0, c0) = samples[after - 1];
    let span = t1.duration_since(t0).as_secs_f64();
    let part = if span > 0.0 { at.duration_since(t0).as_secs_f64() / span } else { 1.0 };
    Some(c0 + (c1 - c0) * part)
}

/// CPU seconds the calling thread has used (user + system), in nanoseconds' resolution.
pub fn thread_cpu_seconds() -> f64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which `now` is.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_ticks_are_read_after_the_command_name() {
        let stat = "4242 (tidal (serve) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 731 69 0 0 20 0 9 0 100 0";
        assert_eq!(cpu_ticks(stat), Some(800));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn cpu_between_instants_is_interpolated_from_the_samples() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let samples = [(at(0), 1.0), (at(100), 2.0), (at(200), 2.5)];
        assert_eq!(interpolate(&samples, at(50)), Some(1.5));
        assert_eq!(interpolate(&samples, at(150)), Some(2.25));
        assert_eq!(interpolate(&samples, at(0)), Some(1.0));
        assert_eq!(interpolate(&samples, at(300)), None, "after the last sample");
    }

    #[test]
    fn a_running_process_is_measured() {
        let meter = CpuMeter::start(std::process::id());
        let from = Instant::now() + SAMPLE_EVERY * 2;
        while Instant::now() < from {}
        // Spin until this thread alone has used 300 ms of CPU, however long a busy machine makes
        // that take: the process (this thread and any other) used at least as much.
        let start = thread_cpu_seconds();
        while thread_cpu_seconds() - start < 0.3 {
            std::hint::black_box((0..1000u64).sum::<u64>());
        }
        let to = Instant::now();
        let spent = meter.seconds_between(from, to).expect("samples cover the window");
        assert!(spent > 0.25, "300 ms of this thread's CPU measured as {spent} s for the process");
    }
}
