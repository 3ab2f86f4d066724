//! `tidal produce` and `tidal consume`: small clients for demos and operators.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use tidal::tools;

use super::BrokerArgs;

pub const PRODUCE_EXAMPLES: &str = "Examples:
  echo '{\"id\":\"1\",\"text\":\"I loved it\"}' | tidal produce --topic tidal.requests.sentiment
  tidal produce requests.jsonl --rate 50          # 50 requests/s, with a progress bar
  tidal produce --topic tidal.requests.ocr --image scan1.png --image scan2.jpg";

pub const CONSUME_EXAMPLES: &str = "Examples:
  tidal consume --topic tidal.results.sentiment --max 10
  tidal consume --topic tidal.results.sentiment --follow | jq .label
  tidal consume --topic tidal.dlq --headers          # dead letters with their reason headers";

#[derive(Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Topic to write to.
    #[arg(long, default_value = "tidal.requests.sentiment")]
    topic: String,
    /// Send this JPEG/PNG file as one raw record (repeatable); no JSON input is read then.
    #[arg(long = "image", value_name = "FILE")]
    images: Vec<PathBuf>,
    /// Records per second (default: as fast as the broker takes them).
    #[arg(long)]
    rate: Option<f64>,
    /// No progress bar (it is drawn only on a terminal anyway).
    #[arg(long)]
    quiet: bool,
    /// File of JSON lines; `-` or nothing reads stdin.
    file: Option<PathBuf>,
}

#[derive(Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Topic to read.
    #[arg(long, default_value = "tidal.results.sentiment")]
    topic: String,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<usize>,
    /// Stop when nothing arrived for this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    idle: Duration,
    /// Keep reading new records until interrupted (ignores --idle).
    #[arg(long, short)]
    follow: bool,
    /// Print headers too (as {"value": ..., "headers": {...}}).
    #[arg(long)]
    headers: bool,
}

pub fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let config = args.brokers.kafka_config()?;
    let topic = &args.topic;
    let options = tools::ProduceOptions { rate: args.rate, total: None, progress: !args.quiet };
    options.validate()?;
    super::preflight(&config, std::slice::from_ref(topic), super::COMMAND_CONNECT_TIMEOUT)?;
    if !args.images.is_empty() {
        let count = tools::produce_images(&config, topic, &args.images)?;
        eprintln!("produced {count} image records to {topic}");
        return Ok(());
    }
    let count = match args.file.filter(|f| f.as_os_str() != "-") {
        Some(path) => {
            let open = || std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()));
            let lines = BufReader::new(open()?).lines().map_while(Result::ok).filter(|l| !l.trim().is_empty());
            let options = tools::ProduceOptions { total: Some(lines.count() as u64), ..options };
            tools::produce_lines(&config, topic, BufReader::new(open()?), options)?
        }
        None => tools::produce_lines(&config, topic, std::io::stdin().lock(), options)?,
    };
    eprintln!("produced {count} records to {topic}");
    Ok(())
}

pub fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let config = args.brokers.kafka_config()?;
    super::preflight(&config, std::slice::from_ref(&args.topic), super::COMMAND_CONNECT_TIMEOUT)?;
    let until = tools::ConsumeUntil { max: args.max, idle: (!args.follow).then_some(args.idle) };
    tools::consume(&config, &args.topic, until, |value, headers| {
        if args.headers {
            let headers: serde_json::Map<String, serde_json::Value> =
                headers.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
            println!("{}", serde_json::json!({"value": value, "headers": headers}));
        } else {
            println!("{value}");
        }
    })?;
    Ok(())
}
