//! The `strata` binary: parse flags, start logging, run the command.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = strata::cli::Cli::parse();
    strata::telemetry::init(cli.log_format);
    std::process::exit(strata::cli::run(cli).await);
}
