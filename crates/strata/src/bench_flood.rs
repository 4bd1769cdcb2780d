//! `strata bench flood`: what a flood of bad keys costs the clients with good ones. The valid
//! clients (`--clients`, `GET /v1/whoami`) run twice in one run, on one server: first beside 64
//! clients sending valid reads, then beside 64 clients sending invalid keys (half well-formed
//! keys that do not exist, half the real key's id with a wrong secret). Every invalid request is
//! a 401 whose audit entry goes through the rejection queue, so the second throughput should be
//! no lower than the first: the target is at least 0.9× (a 401 must not cost more than a read).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use strata_core::error::Result;

use crate::OpenOptions;
use crate::bench::{BenchArgs, Harness, Scenario, Target, drive, err, ms};

/// The clients beside the measured ones.
const NOISE_CLIENTS: usize = 64;
/// The throughput beside invalid keys must be at least this share of that beside valid reads.
const TARGET: f64 = 0.9;

/// What the 64 noise clients send.
#[derive(Clone, Copy, PartialEq)]
enum Noise {
    ValidReads,
    InvalidKeys,
}

pub async fn run(opts: &OpenOptions, args: &BenchArgs) -> Result<String> {
    let h = Harness::start(opts, args).await?;
    let target = h.target();
    let beside_valid = beside(&target, Noise::ValidReads, args).await?;
    let beside_invalid = beside(&target, Noise::InvalidKeys, args).await?;
    let strata = h.finish().await?;
    let (valid, invalid) = (beside_valid.0.per_sec(), beside_invalid.0.per_sec());
    let ratio = invalid / valid.max(1.0);
    let verdict = if ratio >= TARGET { "meets" } else { "MISSES" };
    Ok(format!(
        "scenario flood on {} with {} valid clients (whoami) for {}s each:\n  \
         beside {NOISE_CLIENTS} clients sending valid reads: {valid:.0}/s (p50 {:.2} ms, p99 {:.2} ms, {} errors; the reads {:.0}/s)\n  \
         beside {NOISE_CLIENTS} clients sending invalid keys: {invalid:.0}/s (p50 {:.2} ms, p99 {:.2} ms, {} errors; the 401s {:.0}/s)\n  \
         ratio {ratio:.2}, target >= {TARGET:.1}: {verdict}; ledger invariants hold",
        strata.store.backend(),
        args.clients,
        args.seconds,
        ms(beside_valid.0.pct(0.50)),
        ms(beside_valid.0.pct(0.99)),
        beside_valid.0.errors,
        beside_valid.1,
        ms(beside_invalid.0.pct(0.50)),
        ms(beside_invalid.0.pct(0.99)),
        beside_invalid.0.errors,
        beside_invalid.1,
    ))
}

/// Drives the valid clients for `args.seconds` (after the warm-up) while the noise clients run;
/// returns their measure and the noise's answers per second.
async fn beside(t: &Target, noise: Noise, args: &BenchArgs) -> Result<(crate::bench::Measured, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    // Their own connections, so the valid clients' pool is the same in both runs.
    let client = reqwest::Client::builder().pool_max_idle_per_host(NOISE_CLIENTS).build().map_err(err)?;
    // The real key's `lp_live_<keyid>` part, for wrong secrets.
    let real_keyid = t.key.get(..("lp_live_".len() + 16)).unwrap_or_default().to_owned();
    let mut tasks = Vec::new();
    for c in 0..NOISE_CLIENTS {
        let (client, url, key, real_keyid) = (client.clone(), format!("{}/v1/whoami", t.base), t.key.clone(), real_keyid.clone());
        let (stop, answered) = (stop.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let presented = match noise {
                    Noise::ValidReads => key.clone(),
                    // A well-formed key whose id no key has (hex digits are Crockford digits).
                    Noise::InvalidKeys if c % 2 == 0 => format!("lp_live_{:08X}{:08X}_{}", c, n, "A".repeat(43)),
                    Noise::InvalidKeys => format!("{real_keyid}_{:043}", n),
                };
                if let Ok(r) = client.get(&url).bearer_auth(&presented).send().await {
                    let _ = r.bytes().await;
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
        }));
    }
    let started = std::time::Instant::now();
    let measured = drive(t, Scenario::Whoami, args.clients, args.seconds).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.map_err(err)?;
    }
    let rate = answered.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64().max(0.001);
    Ok((measured?, rate))
}
