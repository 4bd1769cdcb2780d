//! `strata drill chaos`: 64 clients for a bounded time over 50 children, mixing every write
//! route; a third of the children are archived while an allocation, a generation, a key mint and
//! an endpoint creation race each archive on the same child. The server runs with the default
//! `--max-in-flight` (1,024, well above the clients' peak of 64 × 5 requests), so any
//! SERVICE_UNAVAILABLE is a violation.

use std::time::{Duration, Instant};

use clap::Args;

use super::checks::Check;
use super::processes::{Fail, Scratch};
use super::single::{Common, Session};

#[derive(Args, Debug)]
pub struct ChaosArgs {
    #[command(flatten)]
    pub common: Common,
    /// Seconds of traffic (default: 12 with --short, else 120).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Child organizations the traffic works on; a third of them are archived during it.
    #[arg(long, default_value_t = 50)]
    pub children: usize,
}

impl ChaosArgs {
    pub fn seconds(&self) -> u64 {
        self.seconds.unwrap_or(if self.common.short { 12 } else { 120 })
    }
}

/// Runs the traffic, then the checks.
pub async fn drive(args: &ChaosArgs, seed: u64, scratch: &Scratch, dir: &std::path::Path) -> Result<(Vec<Check>, String), Fail> {
    let seconds = args.seconds();
    let children = args.children.max(3);
    let mut s = Session::start(&args.common, scratch, dir, children, children / 3).await?;
    let traffic = Instant::now();
    let clients = s.spawn_clients(args.clients.max(1), seed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    s.stop_clients(clients).await?;
    let secs = traffic.elapsed().as_secs_f64();
    let (mut checks, figures) = s.checks(Duration::from_secs(if args.common.short { 15 } else { 120 }), 0).await?;
    if !s.stop().await {
        checks.push(Check::new(
            "the server stops cleanly on SIGTERM after the drill",
            &["it did not exit cleanly within 10 s".to_owned()],
            String::new(),
        ));
    }
    Ok((checks, format!("{figures}; {secs:.1} s of traffic from {} clients", args.clients.max(1))))
}
