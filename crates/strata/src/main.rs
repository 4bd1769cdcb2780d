//! The `strata` binary: parse flags, start logging, run the command.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = strata::cli::Cli::parse();
    // The load harness serves in this process: a log line per request would be what it measures.
    let quiet = matches!(cli.command, strata::cli::Command::Bench(_));
    strata::telemetry::init(cli.log_format, if quiet { "warn" } else { strata::telemetry::DEFAULT_FILTER });
    std::process::exit(strata::cli::run(cli).await);
}
