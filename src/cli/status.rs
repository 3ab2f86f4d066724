//! `tidal status`: a consumer group's partitions, once or refreshed until interrupted.

use std::time::{Duration, Instant};

use clap::Args;

use tidal::scale::observe::Observer;
use tidal::shutdown::Shutdown;

use super::BrokerArgs;

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Consumer group of the processors.
    #[arg(long, default_value = "tidal-tidal")]
    group: String,
    /// Topics (default: every `tidal.requests.*`).
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Refresh every `--interval` until interrupted.
    #[arg(long)]
    watch: bool,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    interval: Duration,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    // Only a watch waits for a signal; a single table keeps Ctrl-C's default.
    let shutdown = if args.watch { Shutdown::on_signals("status")? } else { Shutdown::new() };
    tokio::task::block_in_place(|| show(args, &shutdown))
}

fn show(args: StatusArgs, shutdown: &Shutdown) -> anyhow::Result<()> {
    let kafka = args.brokers.kafka_config()?;
    super::preflight(&kafka, &args.topics, super::COMMAND_CONNECT_TIMEOUT)?;
    let observer = Observer::new(&args.brokers.kafka_config()?, &args.group, args.topics, "tidal.requests.")?;
    let started = Instant::now();
    let mut previous = None;
    loop {
        let snapshot = observer.snapshot(started.elapsed().as_secs_f64())?;
        if args.watch {
            print!("\x1b[2J\x1b[H");
        }
        print!("{}", tidal::scale::run::status_table(&snapshot, previous.as_ref()));
        if !args.watch || shutdown.sleep(args.interval) {
            return Ok(());
        }
        previous = Some(snapshot);
    }
}
