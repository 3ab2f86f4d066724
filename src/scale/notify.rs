//! Telling people about decisions: every change of replica count, as the same JSON as the
//! decisions topic, POSTed to a webhook (chat-ops) and/or given on stdin to a command. Both run
//! in the background with a timeout; a failure is logged and counted and never delays or changes
//! scaling.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// `[notify]` of the scaler's configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// POST each decision here (`Content-Type: application/json`).
    pub webhook_url: Option<String>,
    /// Run this program with these arguments, the decision on its stdin.
    pub command: Vec<String>,
    /// How long a delivery may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl NotifyConfig {
    fn timeout(&self) -> Duration {
        if self.timeout.is_zero() {
            Duration::from_secs(5)
        } else {
            self.timeout
        }
    }
}

/// Sends `decision` (JSON) wherever `config` says, without waiting for it.
pub fn send(config: &NotifyConfig, decision: &serde_json::Value) {
    let body = decision.to_string();
    let timeout = config.timeout();
    if let Some(url) = config.webhook_url.clone() {
        let body = body.clone();
        tokio::spawn(async move {
            if let Err(reason) = post(&url, body, timeout).await {
                failed("webhook", &reason);
            }
        });
    }
    if !config.command.is_empty() {
        let command = config.command.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(reason) = run(&command, &body, timeout) {
                failed("command", &reason);
            }
        });
    }
}

fn failed(channel: &'static str, reason: &str) {
    metrics::counter!("tidal_scale_errors_total", "kind" => "notify").increment(1);
    tracing::warn!(channel, reason, "could not deliver the decision notification (scaling goes on)");
}

async fn post(url: &str, body: String, timeout: Duration) -> Result<(), String> {
    let client = reqwest::Client::builder().timeout(timeout).build().map_err(|e| e.to_string())?;
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("POST {url}: {}", response.status()));
    }
    Ok(())
}

fn run(command: &[String], body: &str, timeout: Duration) -> Result<(), String> {
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(body.as_bytes());
    }
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{command:?} exited with {status}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{command:?} still running after {timeout:?}; killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("{command:?}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_gets_the_decision_on_stdin_and_a_slow_one_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("decision.json");
        let script = format!("cat > {}", out.display());
        run(&["sh".into(), "-c".into(), script], r#"{"to":3}"#, Duration::from_secs(5)).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), r#"{"to":3}"#);
        let slow = run(&["sleep".into(), "5".into()], "{}", Duration::from_millis(200)).unwrap_err();
        assert!(slow.contains("killed"), "{slow}");
        let missing = run(&["/no/such/program".into()], "{}", Duration::from_secs(1)).unwrap_err();
        assert!(missing.contains("/no/such/program"), "{missing}");
    }

    #[test]
    fn a_webhook_gets_the_decision_and_a_dead_one_is_an_error() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            use std::io::{BufRead, BufReader, Read};
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut length, mut line) = (0, String::new());
            while reader.read_line(&mut line).unwrap() > 2 {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                line.clear();
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            stream.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").unwrap();
            String::from_utf8(body).unwrap()
        });
        runtime.block_on(post(&url, r#"{"to":2}"#.into(), Duration::from_secs(5))).unwrap();
        assert_eq!(server.join().unwrap(), r#"{"to":2}"#);
        let dead = runtime.block_on(post("http://127.0.0.1:9/hook", "{}".into(), Duration::from_secs(2)));
        assert!(dead.is_err());
    }
}
