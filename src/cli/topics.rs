//! `tidal topics apply`: create the declared topics that are missing, report those that differ.

use std::path::PathBuf;

use clap::Subcommand;

use tidal::kafka;

use super::BrokerArgs;

#[derive(Subcommand)]
pub enum TopicsCommand {
    /// Create missing topics and report those that exist with other settings.
    Apply {
        #[command(flatten)]
        brokers: BrokerArgs,
        /// Folder of topic files (default: the definitions built into tidal, same as topics/).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Replication factor for created topics, overriding the files.
        #[arg(long)]
        replication_factor: Option<i32>,
    },
}

pub async fn run(command: TopicsCommand) -> anyhow::Result<()> {
    let TopicsCommand::Apply { brokers, dir, replication_factor } = command;
    let specs = kafka::load_topic_specs(dir.as_deref())?;
    super::preflight(&brokers.kafka_config()?, &[], super::COMMAND_CONNECT_TIMEOUT)?;
    let admin = kafka::admin_client(&brokers.kafka_config()?)?;
    for report in kafka::apply_topics(&admin, &specs, replication_factor).await? {
        println!("{report}");
    }
    Ok(())
}
