//! The `strata` binary: parse flags, start logging, run the command.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() {
    strata::telemetry::init();
    let cli = strata::cli::Cli::parse();
    std::process::exit(strata::cli::run(cli).await);
}
