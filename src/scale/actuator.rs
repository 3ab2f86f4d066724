//! Actuators: how a decided replica count becomes running processors.
//!
//! - `local`: spawns and stops `tidal serve` processes on this host (stable instance names
//!   `<prefix>-0`, `<prefix>-1`, ...; stopped newest first with SIGTERM, so each finishes its
//!   transaction and leaves the group);
//! - `command`: runs a user command with `{replicas}` substituted (any orchestrator);
//! - `compose`: `docker compose up -d --scale <service>=<replicas>`;
//! - `kubernetes`: sets `spec.replicas` of a Deployment or StatefulSet through its `scale`
//!   subresource with `kubectl scale` (in-cluster service-account or kubeconfig credentials,
//!   whichever kubectl finds), and reads the current count back;
//! - `dry-run`: only logs.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Which actuator, and its settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ActuatorConfig {
    /// `tidal serve` child processes on this host.
    Local {
        /// Arguments after `tidal serve` (e.g. `["--config", "tidal.toml"]`).
        #[serde(default)]
        serve_args: Vec<String>,
        /// Instance name prefix; replica i runs as `<prefix>-<i>`.
        #[serde(default = "default_prefix")]
        instance_prefix: String,
        /// The tidal binary (default: this one).
        #[serde(default)]
        binary: Option<PathBuf>,
        /// Replica i serves its metrics on 127.0.0.1:<metrics_base_port + i> (0: metrics off),
        /// so that processes on one host do not fight over a port.
        #[serde(default = "default_metrics_base_port")]
        metrics_base_port: u16,
        /// Warm standbys: this many more processes run with `--standby` (models loaded, outside
        /// the group) as the next instances; a scale-up activates them (SIGUSR1) instead of
        /// starting cold ones, and new standbys are started behind them.
        #[serde(default)]
        standby: u32,
    },
    /// A shell command; `{replicas}` is replaced by the count.
    Command { command: String },
    /// `docker compose up -d --scale <service>=<n>` in `directory`.
    Compose {
        #[serde(default = "default_service")]
        service: String,
        #[serde(default)]
        directory: Option<PathBuf>,
    },
    /// A Deployment or StatefulSet, scaled with `kubectl scale` (the `scale` subresource).
    Kubernetes {
        /// `deployment` or `statefulset`.
        #[serde(default = "default_workload")]
        workload: String,
        name: String,
        #[serde(default)]
        namespace: Option<String>,
        /// kubeconfig context (default: kubectl's current one, or in-cluster credentials).
        #[serde(default)]
        context: Option<String>,
        #[serde(default = "default_kubectl")]
        kubectl: PathBuf,
    },
    /// Log decisions only.
    DryRun,
}

fn default_workload() -> String {
    "deployment".into()
}

fn default_kubectl() -> PathBuf {
    "kubectl".into()
}

fn default_prefix() -> String {
    "scaled".into()
}

fn default_metrics_base_port() -> u16 {
    9470
}

fn default_service() -> String {
    "tidal".into()
}

impl Default for ActuatorConfig {
    fn default() -> Self {
        ActuatorConfig::Local {
            serve_args: Vec::new(),
            instance_prefix: default_prefix(),
            binary: None,
            metrics_base_port: default_metrics_base_port(),
            standby: 0,
        }
    }
}

/// Sets the number of running processors.
pub trait Actuator {
    /// Makes `replicas` processors run; returns once the change is under way.
    fn set(&mut self, replicas: u32) -> Result<()>;
    /// Processors running (or starting) now, as far as the actuator knows.
    fn current(&self) -> Option<u32>;
    /// Stops what the actuator started (local processes); others leave things as they are.
    fn shutdown(&mut self) {}
    /// Called every interval: puts back what drifted (a local process that died is restarted).
    fn reconcile(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Builds the configured actuator.
pub fn build(config: &ActuatorConfig) -> Result<Box<dyn Actuator>> {
    Ok(match config {
        ActuatorConfig::Local { serve_args, instance_prefix, binary, metrics_base_port, standby } => {
            let binary = match binary {
                Some(b) => b.clone(),
                None => std::env::current_exe().map_err(|e| {
                    Error::Actuator(format!("cannot find the tidal binary to spawn: {e}; set actuator.binary"))
                })?,
            };
            Box::new(LocalProcesses {
                binary,
                serve_args: serve_args.clone(),
                prefix: instance_prefix.clone(),
                metrics_base_port: *metrics_base_port,
                standby: *standby,
                children: Vec::new(),
                target: 0,
            })
        }
        ActuatorConfig::Command { command } => Box::new(ShellCommand { template: command.clone(), last: None }),
        ActuatorConfig::Compose { service, directory } => {
            let mut template = format!("docker compose up -d --no-recreate --scale {service}={{replicas}} {service}");
            if let Some(dir) = directory {
                template = format!("cd '{}' && {template}", dir.display());
            }
            Box::new(ShellCommand { template, last: None })
        }
        ActuatorConfig::Kubernetes { workload, name, namespace, context, kubectl } => {
            if !matches!(workload.as_str(), "deployment" | "statefulset") {
                return Err(Error::Config(format!(
                    "actuator.workload = {workload:?}: use \"deployment\" or \"statefulset\""
                )));
            }
            let mut base = Vec::new();
            if let Some(ns) = namespace {
                base.extend(["--namespace".to_string(), ns.clone()]);
            }
            if let Some(ctx) = context {
                base.extend(["--context".to_string(), ctx.clone()]);
            }
            Box::new(Kubernetes { kubectl: kubectl.clone(), target: format!("{workload}/{name}"), base, last: None })
        }
        ActuatorConfig::DryRun => Box::new(DryRun { last: None }),
    })
}

/// Local `tidal serve` processes.
pub struct LocalProcesses {
    binary: PathBuf,
    serve_args: Vec<String>,
    prefix: String,
    metrics_base_port: u16,
    /// Warm standbys kept behind the active replicas.
    standby: u32,
    /// Processes, sorted by replica index.
    children: Vec<Replica>,
    /// The count last asked for.
    target: u32,
}

/// One local process: replica `index` (instance `<prefix>-<index>`), active or a warm standby.
struct Replica {
    index: usize,
    child: Child,
    active: bool,
}

impl LocalProcesses {
    fn reap(&mut self) {
        // A child that exited on its own (crash, bad config) is forgotten so that it is restarted
        // under the same instance name (its transactional ids fence whatever it left open).
        self.children.retain_mut(|replica| match replica.child.try_wait() {
            Ok(Some(status)) => {
                tracing::warn!(instance = %format!("{}-{}", self.prefix, replica.index), %status, "processor exited; it will be restarted");
                false
            }
            _ => true,
        });
    }

    fn spawn(&self, index: usize, active: bool) -> Result<Replica> {
        let instance = format!("{}-{index}", self.prefix);
        let metrics = match self.metrics_base_port {
            0 => String::new(),
            base => format!("127.0.0.1:{}", u32::from(base) + index as u32),
        };
        let mut command = Command::new(&self.binary);
        command.arg("serve").args(&self.serve_args).args(["--instance", &instance, "--metrics-listen", &metrics]);
        if !active {
            command.arg("--standby");
        }
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| Error::Actuator(format!("cannot start {} serve: {e}", self.binary.display())))?;
        let what = if active { "started a processor" } else { "started a warm standby" };
        tracing::info!(%instance, pid = child.id(), "{what}");
        Ok(Replica { index, child, active })
    }
}

impl Actuator for LocalProcesses {
    /// Replicas are instances `<prefix>-0` .. `<prefix>-(n-1)`: missing ones are started (or a
    /// standby of that index activated), higher ones stopped (newest first), so instance names
    /// stay stable and unique; standbys run as the next `standby` instances.
    fn set(&mut self, replicas: u32) -> Result<()> {
        self.reap();
        self.target = replicas;
        let wanted = replicas as usize;
        let behind = wanted + self.standby as usize;
        self.children.sort_by_key(|r| r.index);
        // Active replicas above the count can not go back to standby: stop them, and surplus
        // standbys, newest first.
        let mut kept = Vec::new();
        while let Some(mut replica) = self.children.pop() {
            if (replica.active && replica.index >= wanted) || replica.index >= behind {
                stop_gracefully(&mut replica.child, Duration::from_secs(40));
                tracing::info!(instance = %format!("{}-{}", self.prefix, replica.index), "stopped a processor");
            } else {
                kept.push(replica);
            }
        }
        self.children = kept;
        for index in 0..behind {
            let active = index < wanted;
            match self.children.iter_mut().find(|r| r.index == index) {
                Some(replica) if active && !replica.active => {
                    let _ = Command::new("kill").args(["-USR1", &replica.child.id().to_string()]).status();
                    replica.active = true;
                    tracing::info!(instance = %format!("{}-{index}", self.prefix), "activated a warm standby");
                }
                Some(_) => {}
                None => {
                    let replica = self.spawn(index, active)?;
                    self.children.push(replica);
                }
            }
        }
        self.children.sort_by_key(|r| r.index);
        Ok(())
    }

    fn current(&self) -> Option<u32> {
        Some(self.children.iter().filter(|r| r.active).count() as u32)
    }

    fn shutdown(&mut self) {
        let standby = std::mem::take(&mut self.standby);
        let _ = self.set(0);
        self.standby = standby;
    }

    fn reconcile(&mut self) -> Result<()> {
        self.set(self.target)
    }
}

/// SIGTERM, then wait; SIGKILL after `timeout`.
fn stop_gracefully(child: &mut Child, timeout: Duration) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A shell command run on every change.
pub struct ShellCommand {
    template: String,
    last: Option<u32>,
}

impl Actuator for ShellCommand {
    fn set(&mut self, replicas: u32) -> Result<()> {
        if self.last == Some(replicas) {
            return Ok(());
        }
        let command = self.template.replace("{replicas}", &replicas.to_string());
        let status = Command::new("sh")
            .args(["-c", &command])
            .status()
            .map_err(|e| Error::Actuator(format!("cannot run actuator command {command:?}: {e}")))?;
        if !status.success() {
            return Err(Error::Actuator(format!("actuator command {command:?} failed with {status}")));
        }
        self.last = Some(replicas);
        Ok(())
    }

    fn current(&self) -> Option<u32> {
        self.last
    }
}

/// `kubectl scale` on one workload.
pub struct Kubernetes {
    kubectl: PathBuf,
    target: String,
    base: Vec<String>,
    last: Option<u32>,
}

impl Kubernetes {
    fn kubectl(&self, args: &[String]) -> Result<String> {
        let output = Command::new(&self.kubectl).args(&self.base).args(args).output().map_err(|e| {
            Error::Actuator(format!("cannot run {}: {e} (is kubectl installed?)", self.kubectl.display()))
        })?;
        if !output.status.success() {
            return Err(Error::Actuator(format!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `spec.replicas` as the API server has it now.
    pub fn read_replicas(&self) -> Result<u32> {
        let out =
            self.kubectl(&["get".into(), self.target.clone(), "-o".into(), "jsonpath={.spec.replicas}".into()])?;
        out.trim()
            .parse()
            .map_err(|_| Error::Actuator(format!("kubectl returned {out:?} as the replicas of {}", self.target)))
    }
}

impl Actuator for Kubernetes {
    fn set(&mut self, replicas: u32) -> Result<()> {
        self.kubectl(&["scale".into(), self.target.clone(), format!("--replicas={replicas}")])?;
        self.last = Some(replicas);
        Ok(())
    }

    fn current(&self) -> Option<u32> {
        self.last.or_else(|| self.read_replicas().ok())
    }
}

/// Only remembers.
pub struct DryRun {
    last: Option<u32>,
}

impl Actuator for DryRun {
    fn set(&mut self, replicas: u32) -> Result<()> {
        self.last = Some(replicas);
        Ok(())
    }

    fn current(&self) -> Option<u32> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_actuator_substitutes_and_reports_failure() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n");
        let mut a =
            build(&ActuatorConfig::Command { command: format!("echo {{replicas}} > {}", file.display()) }).unwrap();
        a.set(3).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "3");
        assert_eq!(a.current(), Some(3));
        let mut failing = build(&ActuatorConfig::Command { command: "exit 7".into() }).unwrap();
        assert!(failing.set(2).unwrap_err().to_string().contains("failed"));
    }

    #[test]
    fn the_kubernetes_actuator_drives_kubectl_scale() {
        use std::os::unix::fs::PermissionsExt;
        // A stand-in kubectl that records its arguments and answers `get` with 3.
        let dir = tempfile::tempdir().unwrap();
        let calls = dir.path().join("calls");
        let fake = dir.path().join("kubectl");
        std::fs::write(
            &fake,
            format!("#!/bin/sh\necho \"$@\" >> {}\ncase \"$*\" in *get*) echo 3;; esac\n", calls.display()),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = ActuatorConfig::Kubernetes {
            workload: "statefulset".into(),
            name: "tidal".into(),
            namespace: Some("ml".into()),
            context: None,
            kubectl: fake,
        };
        let mut a = build(&config).unwrap();
        assert_eq!(a.current(), Some(3), "read from the API server");
        a.set(5).unwrap();
        assert_eq!(a.current(), Some(5));
        let log = std::fs::read_to_string(&calls).unwrap();
        assert!(log.contains("--namespace ml get statefulset/tidal -o jsonpath={.spec.replicas}"), "{log}");
        assert!(log.contains("--namespace ml scale statefulset/tidal --replicas=5"), "{log}");
        let wrong = ActuatorConfig::Kubernetes {
            workload: "pod".into(),
            name: "x".into(),
            namespace: None,
            context: None,
            kubectl: "kubectl".into(),
        };
        assert!(build(&wrong).is_err());
    }

    /// A local actuator whose "tidal" is `script` (written into `dir`), instances `t-<i>`.
    fn local_processes(dir: &std::path::Path, script: &str, standby: u32) -> LocalProcesses {
        use std::os::unix::fs::PermissionsExt;
        let fake = dir.join("fake-tidal");
        std::fs::write(&fake, script).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        LocalProcesses {
            binary: fake,
            serve_args: vec![],
            prefix: "t".into(),
            metrics_base_port: 0,
            standby,
            children: Vec::new(),
            target: 0,
        }
    }

    #[test]
    fn the_local_actuator_starts_and_stops_processes() {
        // A stand-in for `tidal serve`: what matters here is the process bookkeeping.
        let dir = tempfile::tempdir().unwrap();
        let mut a = local_processes(dir.path(), "#!/bin/sh\nexec sleep 30\n", 0);
        a.set(2).unwrap();
        assert_eq!(a.current(), Some(2));
        // The highest instance dies: reconcile restarts it under its own name.
        let _ = a.children[1].child.kill();
        let _ = a.children[1].child.wait();
        a.reconcile().unwrap();
        assert_eq!(a.children.iter().map(|r| r.index).collect::<Vec<_>>(), vec![0, 1]);
        a.set(1).unwrap();
        assert_eq!(a.current(), Some(1));
        // A process that dies is restarted by the next reconcile.
        let _ = a.children[0].child.kill();
        let _ = a.children[0].child.wait();
        a.reconcile().unwrap();
        assert_eq!(a.current(), Some(1));
        assert_eq!(a.children[0].index, 0, "the replacement keeps instance 0");
        assert!(a.children[0].child.try_wait().unwrap().is_none(), "a live replacement");
        a.shutdown();
        assert_eq!(a.current(), Some(0));
    }

    #[test]
    fn warm_standbys_run_behind_the_replicas_and_are_activated_on_a_scale_up() {
        // A stand-in that records its arguments and a SIGUSR1, per instance.
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "#!/bin/bash\ninstance=$(echo \"$@\" | sed 's/.*--instance \\([^ ]*\\).*/\\1/')\n\
             echo \"$@\" > {dir}/args-$instance\ntrap 'echo up >> {dir}/activated-$instance' USR1\n\
             while true; do sleep 0.1; done\n",
            dir = dir.path().display()
        );
        let mut a = local_processes(dir.path(), &script, 1);
        let file = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        let wait_for = |name: &str| {
            let until = Instant::now() + Duration::from_secs(5);
            while file(name).is_empty() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            file(name)
        };
        a.set(1).unwrap();
        assert_eq!(a.current(), Some(1), "standbys are not replicas");
        assert!(!wait_for("args-t-0").contains("--standby") && wait_for("args-t-1").contains("--standby"));
        let standby_pid = a.children[1].child.id();
        a.set(2).unwrap();
        assert_eq!(a.current(), Some(2));
        assert_eq!(a.children[1].child.id(), standby_pid, "the standby became replica 1, not a new process");
        assert_eq!(wait_for("activated-t-1").trim(), "up", "activated with SIGUSR1");
        assert!(wait_for("args-t-2").contains("--standby"), "a new standby behind it");
        a.set(1).unwrap();
        assert_eq!(a.current(), Some(1));
        assert_ne!(a.children[1].child.id(), standby_pid, "an active replica does not go back to standby");
        assert!(!a.children[1].active);
        assert_eq!(a.children.len(), 2);
        a.shutdown();
        assert_eq!(a.children.len(), 0, "standbys stop too");
    }
}
