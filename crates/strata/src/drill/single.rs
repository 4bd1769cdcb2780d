//! What the crash and chaos drills share: one `strata serve` on a scratch database (either
//! backend) that can be killed and started again on the same port, a funded partner, the
//! webhook receiver, the mixed clients, and the checks run once the traffic has stopped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;

use super::api::{Api, Receiver};
use super::api::{Reply, Req};
use super::checks::{self, Check};
use super::db::Db;
use super::effects;
use super::mixed::{self, EVENTS, Effect, Traffic, World};
use super::processes::{Backend, Fail, Launcher, Node, Scratch, free_port};
use super::workload::Write;
use super::workload::{self, Log};
use reqwest::Method;
use serde_json::json;

/// The options both single-server drills take.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The CI form: bounded to well under a minute.
    #[arg(long)]
    pub short: bool,
    /// The database the server runs on.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: Backend,
    /// With `--backend postgres`: an existing PostgreSQL database to connect to; the drill
    /// creates `strata_drill_<ulid>` beside it and drops it at the end.
    #[arg(long, env = "STRATA_DRILL_POSTGRES_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub postgres: String,
    /// The seed of the drill's random choices (default: from the clock; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The strata binary the server runs (default: this one).
    #[arg(long)]
    pub strata_bin: Option<PathBuf>,
    /// Keep the drill's database at the end (to look into it after a failure).
    #[arg(long)]
    pub keep_database: bool,
}

impl Common {
    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64))
    }
}

/// The server's settings: 1 s jobs, 2 s webhook attempts (so a delivery cut by a kill is
/// leased for 7 s), and a 2 s idempotency claim lease (so a write cut by a kill can be retried
/// 2 s later rather than after the default 60 s).
const SETTINGS: [&str; 6] = ["--engine-job-seconds", "1", "--webhook-timeout-seconds", "2", "--idempotency-lease-seconds", "2"];

/// One server on a scratch database, and everything the clients need.
pub struct Session {
    pub launcher: Launcher,
    listen: String,
    pub server: Option<Node>,
    pub db: Db,
    pub receiver: Receiver,
    pub traffic: Traffic,
}

impl Session {
    /// Starts the server on `scratch`, makes a funded `internal`-tier partner (never rate
    /// limited) with the operator command line, starts the receiver (it answers 503 to every
    /// 20th post) and makes `children` children, `doomed` of them to be archived in the run.
    pub async fn start(common: &Common, scratch: &Scratch, dir: &Path, children: usize, doomed: usize) -> Result<Self, Fail> {
        let bin = match &common.strata_bin {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?,
        };
        let launcher = Launcher {
            bin,
            store: scratch.store(),
            secret_hex: strata_core::cursor::ServerSecret::generate().to_hex(),
            dir: dir.to_owned(),
        };
        let listen = format!("127.0.0.1:{}", free_port()?);
        let server = Some(start_server(&launcher, &listen).await?);
        let db = scratch.connect().await?;
        let out = launcher.operator(&["partners", "create", "--name", "drill partner", "--tier", "internal", "--json"]).await?;
        let p: serde_json::Value = serde_json::from_str(out.trim()).map_err(|e| format!("partners create printed no JSON ({e}): {out}"))?;
        let (partner, admin) =
            (p["organizationId"].as_str().unwrap_or_default().to_owned(), p["apiKey"].as_str().unwrap_or_default().to_owned());
        launcher.operator(&["credits", "grant", "--org", &partner, "--credits", "100000000", "--kind", "purchase"]).await?;
        let t0 = std::time::Instant::now();
        let receiver = Receiver::default();
        let hook = receiver.start(20).await?;
        let api = Api::new(vec![format!("http://{listen}")])?;
        let traffic = setup(&api, Arc::new(Log::default()), &admin, &partner, &hook, children, doomed).await?;
        super::say(format!(
            "  server on http://{listen} ({}); partner {partner}; {children} children made in {:.1} s ({doomed} to be archived under racing writes); webhooks to {hook}",
            scratch.name(),
            t0.elapsed().as_secs_f64()
        ));
        Ok(Session { launcher, listen, server, db, receiver, traffic })
    }

    /// `kill -9` the server.
    pub async fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            server.kill9().await;
        }
    }

    /// Starts the server again on the same database and port.
    pub async fn restart(&mut self) -> Result<(), Fail> {
        self.server = Some(start_server(&self.launcher, &self.listen).await?);
        Ok(())
    }

    /// Spawns `clients` mixed clients.
    pub fn spawn_clients(&self, clients: usize, seed: u64) -> Vec<tokio::task::JoinHandle<()>> {
        (0..clients).map(|c| tokio::spawn(mixed::client(self.traffic.clone(), c, clients, seed))).collect()
    }

    /// Stops the clients and waits for each to finish its turn (and its retries).
    pub async fn stop_clients(&self, tasks: Vec<tokio::task::JoinHandle<()>>) -> Result<(), Fail> {
        self.traffic.stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.map_err(|e| format!("a client task failed: {e}"))?;
        }
        Ok(())
    }

    /// The checks after the traffic: the answers seen (no 5xx but the kill switch's; without
    /// kills, no request unanswered either), every acknowledged write in the database, one
    /// effect per key, replays, archived children, webhooks delivered, the ledger. Waits at most
    /// `settle` for jobs, dispatch and deliveries to finish first. Returns the checks and the
    /// figures line.
    pub async fn checks(&mut self, settle: Duration, kills: usize) -> Result<(Vec<Check>, String), Fail> {
        let (waited, busy) = effects::settle(&mut self.db, settle).await?;
        let t = &self.traffic;
        let fresh = super::api::Tally { per_node: vec![0; t.api.nodes.len()], ..Default::default() };
        let tally = std::mem::replace(&mut *workload::lock(&t.api.tally), fresh);
        let keyed = std::mem::take(&mut *workload::lock(&t.stats.keyed));
        let mut during = workload::lock(&t.log.violations).clone();
        if tally.server_errors > 0 || (kills == 0 && tally.transport_errors > 0) {
            during.push(format!(
                "{} 5xx other than KILL_SWITCH, {} requests without a response",
                tally.server_errors, tally.transport_errors
            ));
            during.extend(tally.samples.iter().cloned());
        }
        let unanswered = keyed.iter().filter(|k| k.status == 0).count();
        if unanswered > 0 {
            during.push(format!("{unanswered} writes were never answered, though sent again for 90 s"));
        }
        if let Some(busy) = busy {
            during.push(format!("still busy {waited:.1?} after the traffic: {busy}"));
        }
        let statuses: Vec<String> = tally.statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        let mut out = vec![Check::new(
            "no 5xx but KILL_SWITCH (no SERVICE_UNAVAILABLE, no INTERNAL); every write answered",
            &during,
            format!("responses by status {{{}}}; settled {waited:.1?} after the traffic", statuses.join(", ")),
        )];
        let writes = workload::lock(&t.log.writes).clone();
        out.push(checks::writes(&mut self.db, &writes).await?);
        out.push(effects::exactly_once(&mut self.db, &keyed).await?);
        // Every retried write, and an even spread of the others (at most 1,500 in all).
        let retried: Vec<_> = keyed.iter().filter(|k| k.retried).cloned().collect();
        let others: Vec<_> = keyed.iter().filter(|k| !k.retried).collect();
        let step = (others.len() / 1_500usize.saturating_sub(retried.len()).max(1)).max(1);
        let sample: Vec<_> = retried.into_iter().chain(others.into_iter().step_by(step).cloned()).collect();
        out.push(effects::replays(&t.api, &t.world.admin, &sample).await?);
        out.push(effects::archived(&mut self.db).await?);
        out.push(effects::delivered(&mut self.db, &t.api, &t.world, &self.receiver.snapshot()).await?);
        out.push(checks::ledger(&self.launcher).await?);
        let acked = keyed.iter().filter(|k| (200..300).contains(&k.status)).count();
        let retries = t.stats.retries.load(Ordering::Relaxed);
        let in_progress = t.stats.in_progress.load(Ordering::Relaxed);
        let figures = format!(
            "{} requests, {} keyed writes, {acked} acked writes, {kills} kills, {retries} retries after no answer, {in_progress} retries after 409 in progress",
            tally.requests,
            keyed.len()
        );
        Ok((out, figures))
    }

    /// Stops the server gracefully (SIGTERM); false when it did not exit cleanly.
    pub async fn stop(&mut self) -> bool {
        let t = std::time::Instant::now();
        let clean = match self.server.take() {
            Some(s) => s.stop().await,
            None => true,
        };
        super::say(format!("  server stopped (SIGTERM) in {:.1} s", t.elapsed().as_secs_f64()));
        clean
    }
}

/// Makes `children` children (each with a project and 5,000 credits) and the partner's firehose
/// endpoint to the receiver, through `t` (so a kill during setup is retried like any write).
/// Children `children - doomed..` will be archived during the run.
async fn setup(
    api: &Api,
    log: Arc<Log>,
    admin: &str,
    partner: &str,
    hook: &str,
    children: usize,
    doomed: usize,
) -> Result<Traffic, String> {
    let world = World::new(admin, partner, hook, children - doomed.min(children));
    let mut t = Traffic { api: api.clone(), log, stats: Arc::default(), world: Arc::new(world), stop: Arc::default() };
    let body = json!({ "url": hook, "events": EVENTS, "scope": "all_children", "description": "drill firehose" });
    let r = t.write(Req::write(0, Method::POST, "/v1/webhook-endpoints", admin, Some(body)), Effect::None).await;
    let firehose = must("creating the firehose endpoint".into(), r)?.str("/endpoint/id");
    t.log.write(0, Write::Endpoint { id: firehose.clone() });
    // Ten children at a time: a child, its project, its first credits.
    let mut made = Vec::new();
    for batch in (0..children).collect::<Vec<_>>().chunks(10) {
        for child in futures::future::join_all(batch.iter().map(|&i| make_child(&t, i))).await {
            made.push(child?);
        }
    }
    let w = Arc::get_mut(&mut t.world).ok_or("setup: the world is shared already")?;
    w.children = made;
    w.firehose = firehose;
    Ok(t)
}

/// A setup step's answer, which must be 2xx.
fn must(what: String, r: Option<Reply>) -> Result<Reply, String> {
    match r {
        Some(r) if r.ok() => Ok(r),
        Some(r) => Err(format!("setup: {what} answered {} {}", r.status, r.body)),
        None => Err(format!("setup: {what} got no answer")),
    }
}

/// Makes child `i` with a project and 5,000 credits; returns (child id, project id).
async fn make_child(t: &Traffic, i: usize) -> Result<(String, String), String> {
    let admin = t.world.admin.as_str();
    let body = json!({ "name": format!("drill child {i}"), "metadata": { "drillKey": "setup" } });
    let r = must(
        format!("creating child {i}"),
        t.write(Req::write(0, Method::POST, "/v1/organizations", admin, Some(body)), Effect::None).await,
    )?;
    let child = r.str("/id");
    t.log.write(0, Write::Org { id: child.clone() });
    let body = json!({ "name": format!("drill project {i}"), "timezone": "UTC" });
    let req = Req::write(0, Method::POST, "/v1/projects", admin, Some(body)).acting(&child);
    let project = must(format!("creating child {i}'s project"), t.write(req, Effect::None).await)?.str("/id");
    t.log.write(0, Write::Project { id: project.clone() });
    let path = format!("/v1/organizations/{child}/credits/allocate");
    let r = t.write(Req::write(0, Method::POST, path, admin, Some(json!({ "credits": 5_000 }))), Effect::None).await;
    let txn = must(format!("funding child {i}"), r)?.str("/id");
    t.log.write(0, Write::Allocation { txn, child: child.clone(), credits: 5_000 });
    Ok((child, project))
}

async fn start_server(launcher: &Launcher, listen: &str) -> Result<Node, Fail> {
    let settings: Vec<String> = SETTINGS.iter().map(|s| (*s).to_owned()).collect();
    // A 5 s drain, so the SIGTERM at the end is answered within the drill's 10 s.
    launcher.serve(1, listen, &settings, &["--drain-timeout-seconds", "5"]).await
}
