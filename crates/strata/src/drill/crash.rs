//! `strata drill crash`: one server under mixed traffic, killed with SIGKILL at random moments
//! (a seeded generator) and started again on the same database each time. Writes left without
//! an answer are sent again with their original Idempotency-Key once it is back.

use std::time::{Duration, Instant};

use clap::Args;

use super::checks::Check;
use super::processes::{Fail, Scratch};
use super::single::{Common, Session};
use super::workload::Rng;

#[derive(Args, Debug)]
pub struct CrashArgs {
    #[command(flatten)]
    pub common: Common,
    /// How many times the server is killed (default: 3 with --short, else 20).
    #[arg(long)]
    pub kills: Option<usize>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Child organizations the traffic works on.
    #[arg(long, default_value_t = 8)]
    pub children: usize,
}

impl CrashArgs {
    pub fn kills(&self) -> usize {
        self.kills.unwrap_or(if self.common.short { 3 } else { 20 })
    }
}

/// Runs the traffic and the kills, then the checks.
pub async fn drive(args: &CrashArgs, seed: u64, scratch: &Scratch, dir: &std::path::Path) -> Result<(Vec<Check>, String), Fail> {
    let kills = args.kills();
    let mut s = Session::start(&args.common, scratch, dir, args.children.max(2), if args.common.short { 1 } else { 3 }).await?;
    let mut rng = Rng::new(seed);
    let clients = s.spawn_clients(args.clients.max(1), seed);
    let traffic = Instant::now();
    // Deliveries of the firehose cut by each kill, and when the server was back.
    let mut cut: Vec<(String, Instant)> = Vec::new();
    let mut downtime = Duration::ZERO;
    for n in 1..=kills {
        // A random moment 1–4 s (short: 1–3 s) into the traffic since the last restart.
        let wait = 1_000 + rng.below(if args.common.short { 2_000 } else { 3_000 });
        tokio::time::sleep(Duration::from_millis(wait)).await;
        s.kill().await;
        let down = Instant::now();
        let firehose = &s.traffic.world.firehose;
        let sql = format!(
            "SELECT event_id, status FROM webhook_deliveries WHERE status = 'delivering' AND endpoint_id IN ('{firehose}', '{}')",
            firehose.trim_start_matches("whe_")
        );
        let cut_now = s.db.pairs(&sql).await.unwrap_or_default();
        // Down for a random 0–500 ms: clients meet refused connections and send again.
        tokio::time::sleep(Duration::from_millis(rng.below(500))).await;
        s.restart().await?;
        downtime += down.elapsed();
        cut.extend(cut_now.into_iter().map(|(e, _)| (e, Instant::now())));
        super::say(format!("  kill {n}/{kills} after {wait} ms; back in {} ms", down.elapsed().as_millis()));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.stop_clients(clients).await?;
    let secs = traffic.elapsed().as_secs_f64();
    let (mut checks, figures) = s.checks(Duration::from_secs(if args.common.short { 25 } else { 120 }), kills).await?;
    // How long after a restart a delivery cut by the kill reached the receiver again.
    let receipts = s.receiver.snapshot();
    let mut gaps: Vec<u128> = cut
        .iter()
        .filter_map(|(event, back)| {
            let bare = event.trim_start_matches("evt_");
            receipts
                .iter()
                .filter(|r| r.accepted && r.tag.is_empty() && r.event_id.trim_start_matches("evt_") == bare && r.at > *back)
                .map(|r| (r.at - *back).as_millis())
                .min()
        })
        .collect();
    gaps.sort_unstable();
    let resent = format!(
        "{} firehose deliveries were in flight at a kill; {} re-sent after the restart, after {} ms at most (median {} ms)",
        cut.len(),
        gaps.len(),
        gaps.last().copied().unwrap_or(0),
        gaps.get(gaps.len() / 2).copied().unwrap_or(0)
    );
    checks.push(Check::new("deliveries cut by a kill are sent again", &[], resent));
    if !s.stop().await {
        checks.push(Check::new(
            "the server stops cleanly on SIGTERM after the drill",
            &["it did not exit cleanly within 10 s".to_owned()],
            String::new(),
        ));
    }
    Ok((checks, format!("{figures}; {secs:.1} s of traffic, {:.1} s of it with the server down", downtime.as_secs_f64())))
}
