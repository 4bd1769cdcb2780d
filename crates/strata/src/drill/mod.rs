//! The drills: harnesses, not unit tests. Each starts `strata serve` processes (this binary, or
//! `--strata-bin`) on a scratch database of its own, drives traffic, then prints each check
//! with its figures, a summary, and exits 1 on any violation. Traffic goes only to 127.0.0.1;
//! the processes are killed and the database dropped at the end, on failure and on Ctrl-C too.
//!
//! - `nodes`: three nodes on one PostgreSQL database and one Redis (one first partner, no 5xx,
//!   a standard key's reads summed over the nodes, revocation within 1 s, a Redis outage,
//!   webhooks received once, every 2xx write stored, the ledger).
//! - `crash`: one server killed with SIGKILL at random moments and restarted under mixed
//!   traffic; unanswered writes are sent again with their original Idempotency-Key.
//! - `chaos`: 64 clients over 50 children mixing every write route, archives racing writes.

mod api;
mod chaos;
mod checks;
mod crash;
mod db;
mod effects;
mod mixed;
mod processes;
mod single;
mod workload;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use self::checks::Check;
use self::processes::{Database, Fail, Launcher, Redis};

/// The drill always runs this many nodes.
const NODES: usize = 3;

#[derive(Subcommand, Debug)]
pub enum DrillCmd {
    /// Three `strata serve` nodes on one PostgreSQL database and one Redis, under traffic.
    Nodes(NodesArgs),
    /// One server killed with SIGKILL at random moments and restarted, under mixed traffic.
    Crash(crash::CrashArgs),
    /// 64 clients over 50 children mixing every write route, archives racing writes.
    Chaos(chaos::ChaosArgs),
}

#[derive(Args, Debug)]
pub struct NodesArgs {
    /// The CI form: 15 s of traffic, 3 revocation rounds (well under two minutes in all).
    #[arg(long)]
    pub short: bool,
    /// Seconds of traffic (default: 15 with --short, else 120).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Concurrent clients, spread over the nodes.
    #[arg(long, default_value_t = 6)]
    pub clients: usize,
    /// Child organizations the traffic works on.
    #[arg(long, default_value_t = 8)]
    pub children: usize,
    /// An existing PostgreSQL database to connect to; the drill creates `strata_drill_<ulid>`
    /// beside it and drops it at the end.
    #[arg(long, env = "STRATA_DRILL_POSTGRES_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub postgres: String,
    /// The strata binary the nodes run (default: this one).
    #[arg(long)]
    pub strata_bin: Option<PathBuf>,
    /// Keep the drill's database at the end (to look into it after a failure).
    #[arg(long)]
    pub keep_database: bool,
}

/// Writes one line to stdout.
fn say(line: impl std::fmt::Display) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
}

/// Runs the drill; returns the exit code (0: every check held, 1: a violation or a failure).
pub async fn run(cmd: DrillCmd) -> i32 {
    match cmd {
        DrillCmd::Nodes(args) => run_nodes(args).await,
        DrillCmd::Crash(args) => {
            let seed = args.common.seed();
            let title = format!("crash: {} kills, {} clients, {} children", args.kills(), args.clients.max(1), args.children.max(2));
            let common = args.common.clone();
            run_single(&common, seed, title, |scratch, dir| Box::pin(async move { crash::drive(&args, seed, scratch, dir).await })).await
        }
        DrillCmd::Chaos(args) => {
            let seed = args.common.seed();
            let title =
                format!("chaos: {} s of traffic, {} clients, {} children", args.seconds(), args.clients.max(1), args.children.max(3));
            let common = args.common.clone();
            run_single(&common, seed, title, |scratch, dir| Box::pin(async move { chaos::drive(&args, seed, scratch, dir).await })).await
        }
    }
}

type Outcome<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(Vec<Check>, String), Fail>> + 'a>>;

/// Makes the drill's directory and scratch database, runs `drive` on them (stopped by Ctrl-C
/// or SIGTERM), removes the database and reports.
async fn run_single<F>(common: &single::Common, seed: u64, title: String, drive: F) -> i32
where
    F: for<'a> FnOnce(&'a processes::Scratch, &'a std::path::Path) -> Outcome<'a>,
{
    say(format!(
        "strata drill {title} ({}, {:?}); seed {seed} (run again with --seed {seed})",
        if common.short { "short" } else { "long" },
        common.backend
    ));
    let dir = std::env::temp_dir().join(format!("strata-drill-{}", ulid::Ulid::new().to_string().to_lowercase()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        say(format!("error: cannot create {}: {e}", dir.display()));
        return 1;
    }
    let scratch = match processes::Scratch::create(common.backend, &common.postgres, &dir).await {
        Ok(s) => s,
        Err(e) => {
            say(format!("error: {e}"));
            return 1;
        }
    };
    let started = Instant::now();
    let outcome = tokio::select! {
        r = drive(&scratch, &dir) => r,
        _ = crate::cli::terminated() => Err("interrupted: stopping the server and dropping the database".to_owned()),
    };
    // The server was dropped with `drive` (killed on drop).
    if common.keep_database {
        say(format!("kept database {}", scratch.name()));
    } else {
        let t = Instant::now();
        match scratch.drop_now().await {
            Ok(()) => say(format!("  dropped {} in {:.1} s", scratch.name(), t.elapsed().as_secs_f64())),
            Err(e) => say(format!("warning: {e}")),
        }
    }
    report(outcome, started, &dir)
}

/// Prints the checks and the summary line; 0 when every check held.
fn report(outcome: Result<(Vec<Check>, String), Fail>, started: Instant, dir: &std::path::Path) -> i32 {
    match outcome {
        Ok((checks, summary)) => {
            let failed = checks.iter().filter(|c| !c.ok).count();
            say("checks:");
            for c in &checks {
                say(format!("  {}  {}: {}", if c.ok { "PASS" } else { "FAIL" }, c.name, c.detail));
            }
            say(format!(
                "summary: {summary}; {} checks, {failed} failed, {} violations; {:.1} s in all; logs in {}",
                checks.len(),
                checks.iter().map(|c| c.violations).sum::<usize>(),
                started.elapsed().as_secs_f64(),
                dir.display()
            ));
            i32::from(failed > 0)
        }
        Err(e) => {
            say(format!("error: {e}"));
            say(format!("logs in {}", dir.display()));
            1
        }
    }
}

/// `strata drill nodes`.
async fn run_nodes(args: NodesArgs) -> i32 {
    let seconds = args.seconds.unwrap_or(if args.short { 15 } else { 120 });
    say(format!(
        "strata drill nodes ({}): {NODES} nodes, {seconds} s of traffic, {} clients, {} children",
        if args.short { "short" } else { "long" },
        args.clients.max(1),
        args.children.max(1)
    ));
    let dir = std::env::temp_dir().join(format!("strata-drill-{}", ulid::Ulid::new().to_string().to_lowercase()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        say(format!("error: cannot create {}: {e}", dir.display()));
        return 1;
    }
    let db = match Database::create(&args.postgres).await {
        Ok(db) => db,
        Err(e) => {
            let _ = std::fs::remove_dir(&dir);
            say(format!("error: {e}"));
            return 1;
        }
    };
    let started = Instant::now();
    let outcome = tokio::select! {
        r = drive(&args, seconds, &db, &dir) => r,
        _ = crate::cli::terminated() => Err("interrupted: stopping the nodes and dropping the database".to_owned()),
    };
    // Every process the drill started was dropped with `drive` (killed on drop).
    if args.keep_database {
        say(format!("kept database {}", db.name));
    } else {
        let t = Instant::now();
        match db.drop_now().await {
            Ok(()) => say(format!("  dropped database {} in {:.1} s", db.name, t.elapsed().as_secs_f64())),
            Err(e) => say(format!("warning: {e}")),
        }
    }
    report(outcome, started, &dir)
}

/// Starts everything, runs the traffic and the checks; returns the checks and a one-line
/// summary of the traffic.
async fn drive(args: &NodesArgs, seconds: u64, db: &Database, dir: &std::path::Path) -> Result<(Vec<Check>, String), Fail> {
    let bin = match &args.strata_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?,
    };
    let launcher = Launcher {
        bin,
        store: processes::StoreArg::Postgres(db.url.clone()),
        secret_hex: strata_core::cursor::ServerSecret::generate().to_hex(),
        dir: dir.to_owned(),
    };
    // The checks' own connection, taken first: three nodes may hold up to 32 each, and a server
    // near `max_connections` must not refuse the drill only at the end.
    let mut conn = db::Db::Pg(db.connect().await?);
    let mut redis = Redis::start(dir).await?;
    say(format!("  database {}; redis-server on 127.0.0.1:{}; logs in {}", db.name, redis.port, dir.display()));

    // The three nodes start together on the empty database (they migrate once, under a lock).
    let t0 = Instant::now();
    let redis_url = redis.url();
    let starts = (1..=NODES).map(|n| launcher.node(n, &redis_url, 1.0));
    let mut nodes = Vec::new();
    for node in futures::future::join_all(starts).await {
        nodes.push(node?);
    }
    say(format!(
        "  nodes up in {:.1} s: {}",
        t0.elapsed().as_secs_f64(),
        nodes.iter().map(|n| format!("node {} {}", n.n, n.base)).collect::<Vec<_>>().join(", ")
    ));
    let mut checks = vec![checks::bootstrap(nodes.iter().filter(|n| n.provisioned).count())];

    // A partner through the operator command line, funded; its key is `internal` so the
    // traffic itself is never rate limited.
    let out = launcher.operator(&["partners", "create", "--name", "drill partner", "--tier", "internal", "--json"]).await?;
    let p: serde_json::Value = serde_json::from_str(out.trim()).map_err(|e| format!("partners create printed no JSON ({e}): {out}"))?;
    let (partner, admin) =
        (p["organizationId"].as_str().unwrap_or_default().to_owned(), p["apiKey"].as_str().unwrap_or_default().to_owned());
    launcher.operator(&["credits", "grant", "--org", &partner, "--credits", "10000000", "--kind", "purchase"]).await?;

    let receiver = api::Receiver::default();
    let hook = receiver.start(20).await?;
    let api = api::Api::new(nodes.iter().map(|n| n.base.clone()).collect())?;
    let log = Arc::new(workload::Log::default());
    let world = Arc::new(workload::setup(&api, &log, &admin, args.children.max(1), &hook).await?);
    say(format!(
        "  partner {partner} funded with 10000000 credits; {} children with a project each; webhooks to {hook}",
        world.children.len()
    ));

    let traffic = Instant::now();
    let deadline = traffic + Duration::from_secs(seconds);
    let clients = args.clients.max(1);
    let tasks: Vec<_> =
        (0..clients).map(|c| tokio::spawn(workload::client(api.clone(), log.clone(), world.clone(), c, clients, deadline))).collect();
    for t in tasks {
        t.await.map_err(|e| format!("a client task failed: {e}"))?;
    }
    let traffic_secs = traffic.elapsed().as_secs_f64();
    let traffic_requests = workload::lock(&api.tally).requests;
    say(format!("  traffic: {traffic_requests} requests in {traffic_secs:.1} s ({:.0}/s)", traffic_requests as f64 / traffic_secs));
    for node in &mut nodes {
        if node.exited() {
            log_violation(&log, format!("node {} exited during the traffic; its log:\n{}", node.n, processes::tail(&node.log_path)));
        }
    }

    checks.push(checks::rate_limit(&api, &world, 200).await?);
    checks.push(checks::revocation(&api, &world, if args.short { 3 } else { 10 }).await?);
    checks.push(checks::redis_outage(&api, &world, &mut redis).await?);

    let drained = checks::drain_webhooks(&mut conn, Duration::from_secs(if args.short { 30 } else { 60 })).await?;
    for node in nodes {
        let n = node.n;
        if !node.stop().await {
            log_violation(&log, format!("node {n} did not stop cleanly on SIGTERM"));
        }
    }
    drop(redis);

    let tally = std::mem::take(&mut *workload::lock(&api.tally));
    let mut during = workload::lock(&log.violations).clone();
    if tally.server_errors > 0 || tally.transport_errors > 0 {
        during.push(format!("{} server errors, {} requests without a response", tally.server_errors, tally.transport_errors));
        during.extend(tally.samples.iter().cloned());
    }
    let statuses: Vec<String> = tally.statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    checks.insert(1, checks::during(&during, format!("responses by status {{{}}}", statuses.join(", "))));
    checks.push(checks::webhooks(&mut conn, &receiver.snapshot(), drained).await?);
    let writes = workload::lock(&log.writes).clone();
    checks.push(checks::writes(&mut conn, &writes).await?);
    checks.push(checks::ledger(&launcher).await?);
    let write_log = dir.join("writes.log");
    std::fs::write(&write_log, log.text()).map_err(|e| format!("cannot write {}: {e}", write_log.display()))?;
    let summary = format!(
        "{} requests ({traffic_requests} in {traffic_secs:.1} s of traffic, per node {:?}), {} 2xx writes (listed in {})",
        tally.requests,
        tally.per_node,
        writes.len(),
        write_log.display()
    );
    Ok((checks, summary))
}

fn log_violation(log: &workload::Log, v: String) {
    workload::lock(&log.violations).push(v);
}
