//! The `tidal` command: logging set-up, then the command line's dispatcher (`cli`).

mod cli;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::LogFormat;

fn main() {
    let thresholds_set = tidal::allocator::return_large_buffers_to_the_os();
    let cli = cli::Cli::parse();
    let filter = EnvFilter::try_from_env("TIDAL_LOG").unwrap_or_else(|_| "info,librdkafka=warn".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).init(),
    }
    tracing::debug!(
        thresholds_set,
        "allocator: buffers of 1 MiB or more are unmapped when freed unless the operator set a threshold"
    );
    if let Err(e) = cli::run(cli) {
        eprintln!("error: {}", read_once(&e));
        std::process::exit(1);
    }
}

/// The error and its causes in one line, each text once: librdkafka's errors repeat their cause
/// in their own text, and the cause again as their source.
fn read_once(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}
