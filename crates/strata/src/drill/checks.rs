//! What the drill verifies once the traffic has run: a standard-tier key's reads summed over
//! the nodes, how fast a revocation reaches every node, webhook deliveries (each received once),
//! every 2xx write found in the database, and the ledger invariants.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use super::api::{Api, Receipt, Req};
use super::db::Db;
use super::processes::{Fail, Launcher};
use super::workload::{World, Write};

/// One check's outcome: what was checked, what was measured, and whether it held.
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// How many violations it found (0 when it held).
    pub violations: usize,
    pub detail: String,
}

impl Check {
    pub fn new(name: &'static str, violations: &[String], detail: String) -> Self {
        let detail = if violations.is_empty() {
            detail
        } else {
            let shown: Vec<&str> = violations.iter().take(10).map(String::as_str).collect();
            format!("{detail}\n      {}{}", shown.join("\n      "), if violations.len() > 10 { "\n      …" } else { "" })
        };
        Check { name, ok: violations.is_empty(), violations: violations.len(), detail }
    }
}

/// The id without its `prefix_` (the database may store either form).
fn bare(id: &str) -> &str {
    id.split_once('_').map_or(id, |(_, rest)| rest)
}

/// Mints a child key (the `standard` tier, per the contract) on node 1.
async fn child_key(api: &Api, world: &World, node: usize) -> Result<(String, String, String), Fail> {
    let path = format!("/v1/organizations/{}/api-keys", world.children[0]);
    let body = json!({ "name": "drill probe", "scopes": ["credits:read"] });
    match api.send(Req::write(node, Method::POST, path, &world.admin, Some(body))).await {
        Some(r) if r.status == 201 => Ok((r.str("/apiKey/id"), r.str("/secret"), r.str("/apiKey/rateLimitTier"))),
        Some(r) => Err(format!("minting a probe key answered {} {}", r.status, r.body)),
        None => Err("minting a probe key got no response".into()),
    }
}

/// What a burst of reads with one key got back.
struct Burst {
    /// Responses by status (0: no response).
    statuses: Vec<(u16, u64)>,
    allowed: u64,
    /// 2xx answers without `X-RateLimit-Limit`: the limiter failed open for them.
    unlimited: u64,
    per_node: [u64; 3],
    secs: f64,
}

impl Burst {
    /// One bucket (120) plus what it refills (2 a second) while the burst ran.
    fn bound(&self) -> u64 {
        120 + (self.secs * 2.0).ceil() as u64
    }
}

/// Fires `reads` GETs of `/v1/whoami` with `secret`, round-robin over the nodes, 12 at a time.
async fn burst(api: &Api, secret: &str, reads: usize) -> Burst {
    let started = Instant::now();
    let mut statuses: HashMap<u16, u64> = HashMap::new();
    let (mut unlimited, mut per_node) = (0, [0u64; 3]);
    let mut next = 0;
    while next < reads {
        let batch: Vec<_> = (next..(next + 12).min(reads)).map(|n| api.send(Req::get(n, "/v1/whoami", secret))).collect();
        for (k, r) in futures::future::join_all(batch).await.into_iter().enumerate() {
            *statuses.entry(r.as_ref().map_or(0, |r| r.status)).or_default() += 1;
            if let Some(r) = r.filter(|r| r.ok()) {
                per_node[(next + k) % 3] += 1;
                unlimited += u64::from(!r.headers.contains_key("x-ratelimit-limit"));
            }
        }
        next += 12;
    }
    let allowed = per_node.iter().sum();
    let mut statuses: Vec<_> = statuses.into_iter().collect();
    statuses.sort();
    Burst { statuses, allowed, unlimited, per_node, secs: started.elapsed().as_secs_f64() }
}

/// Fires `reads` reads with a fresh standard-tier key over the three nodes and checks that the
/// 2xx count stays within one bucket plus its refill over the burst (see `Burst::bound`).
pub async fn rate_limit(api: &Api, world: &World, reads: usize) -> Result<Check, Fail> {
    let (id, secret, tier) = child_key(api, world, 0).await?;
    let b = burst(api, &secret, reads).await;
    let mut v = Vec::new();
    if tier != "standard" {
        v.push(format!("the probe key {id} is on tier {tier:?}, not standard"));
    }
    if b.allowed > b.bound() {
        v.push(format!("{} reads allowed, more than 120 + 2/s × {:.1} s = {}", b.allowed, b.secs, b.bound()));
    }
    if b.unlimited > 0 {
        v.push(format!("{} reads answered without X-RateLimit-Limit (the limiter failed open)", b.unlimited));
    }
    let detail = format!(
        "standard key {id}: {reads} reads over 3 nodes in {:.2} s: {} allowed (per node {:?}), bound {}; statuses {:?}",
        b.secs,
        b.allowed,
        b.per_node,
        b.bound(),
        b.statuses
    );
    Ok(Check::new("standard-tier reads summed over the nodes", &v, detail))
}

/// Kills the drill's Redis: reads keep working (unlimited, without `X-RateLimit-*`); starts it
/// again (empty, on the same port): once every node answers with a limit again (within 10 s),
/// a fresh standard key is held to its tier over the three nodes again.
pub async fn redis_outage(api: &Api, world: &World, redis: &mut super::processes::Redis) -> Result<Check, Fail> {
    let (_, during_key, _) = child_key(api, world, 0).await?;
    redis.kill().await;
    let down = burst(api, &during_key, 150).await;
    redis.restart().await?;
    let back = Instant::now();
    let mut limited = [false; 3];
    while limited.contains(&false) && back.elapsed() < Duration::from_secs(10) {
        for (node, seen) in limited.iter_mut().enumerate() {
            let r = api.send(Req::get(node, "/v1/whoami", &during_key)).await;
            *seen |= r.is_some_and(|r| r.headers.contains_key("x-ratelimit-limit"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resumed = back.elapsed();
    let (_, after_key, _) = child_key(api, world, 0).await?;
    let after = burst(api, &after_key, 200).await;
    let mut v = Vec::new();
    if down.allowed != 150 {
        v.push(format!("with Redis down only {} of 150 reads answered 2xx: {:?}", down.allowed, down.statuses));
    }
    if limited.contains(&false) {
        v.push(format!("nodes {:?} still answered without a limit 10 s after Redis was back", limited.map(|l| !l)));
    }
    if after.allowed > after.bound() || after.unlimited > 0 {
        v.push(format!(
            "after Redis came back a standard key got {} reads (bound {}), {} unlimited",
            after.allowed,
            after.bound(),
            after.unlimited
        ));
    }
    let detail = format!(
        "Redis killed: 150 reads in {:.2} s, {} answered 2xx ({} without a limit); restarted: every node limited again after {} ms; then 200 reads, {} allowed (bound {}), statuses {:?}",
        down.secs,
        down.allowed,
        down.unlimited,
        resumed.as_millis(),
        after.allowed,
        after.bound(),
        after.statuses
    );
    Ok(Check::new("Redis gone: requests keep working, limits hold again once it is back", &v, detail))
}

/// Revokes a fresh child key through node 1 `rounds` times; each time node 1 must refuse it at
/// the very next request, and nodes 2 and 3 within 1 s (polled every 20 ms, for at most 5 s).
pub async fn revocation(api: &Api, world: &World, rounds: usize) -> Result<Check, Fail> {
    let mut v = Vec::new();
    let mut worst = Duration::ZERO;
    let mut times = Vec::new();
    for round in 0..rounds {
        let (id, secret, _) = child_key(api, world, 0).await?;
        for node in 0..3 {
            match api.send(Req::get(node, "/v1/credits", &secret)).await {
                Some(r) if r.status == 200 => {}
                other => v.push(format!("round {round}: the fresh key {id} got {:?} on node {}", other.map(|r| r.status), node + 1)),
            }
        }
        let path = format!("/v1/organizations/{}/api-keys/{id}", world.children[0]);
        match api.send(Req::write(0, Method::DELETE, path, &world.admin, None)).await {
            Some(r) if r.ok() => {}
            other => return Err(format!("revoking {id} on node 1 answered {:?}", other.map(|r| (r.status, r.body)))),
        }
        let revoked = Instant::now();
        match api.send(Req::get(0, "/v1/credits", &secret)).await {
            Some(r) if r.status == 401 => {}
            other => v.push(format!("round {round}: node 1 answered {:?} to the key it had just revoked", other.map(|r| r.status))),
        }
        let polls = (1..3).map(|node| {
            let (api, secret) = (api.clone(), secret.clone());
            async move { api.until_refused(node, "/v1/credits", &secret, revoked, Duration::from_secs(5)).await }
        });
        for (k, t) in futures::future::join_all(polls.collect::<Vec<_>>()).await.into_iter().enumerate() {
            match t {
                Some(t) => {
                    worst = worst.max(t);
                    times.push(format!("{:.0}", t.as_secs_f64() * 1000.0));
                    if t > Duration::from_secs(1) {
                        v.push(format!("round {round}: node {} refused the revoked key only after {t:?}", k + 2));
                    }
                }
                None => v.push(format!("round {round}: node {} still accepted the revoked key after 5 s", k + 2)),
            }
        }
    }
    let detail = format!(
        "{rounds} keys revoked on node 1: node 1 refused each at the next request; nodes 2 and 3 after [{}] ms (worst {:.0} ms, limit 1000 ms)",
        times.join(", "),
        worst.as_secs_f64() * 1000.0
    );
    Ok(Check::new("a revoked key is refused on every node within 1 s", &v, detail))
}

/// Waits (at most `limit`) until every event is dispatched and no delivery is pending; returns
/// (undispatched events, deliveries not yet delivered or failed) when it stopped waiting.
pub async fn drain_webhooks(db: &mut Db, limit: Duration) -> Result<(i64, i64, Duration), Fail> {
    let started = Instant::now();
    loop {
        let undispatched = db.count("SELECT count(*) FROM events WHERE dispatched = 0").await?;
        let pending = db.count("SELECT count(*) FROM webhook_deliveries WHERE status IN ('pending', 'delivering')").await?;
        if (undispatched == 0 && pending == 0) || started.elapsed() > limit {
            return Ok((undispatched, pending, started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Each delivery reached the receiver, and none was accepted twice (no node crashed in this
/// drill, so at-least-once must be exactly once here); every receipt matches a delivery.
pub async fn webhooks(db: &mut Db, receipts: &[Receipt], left: (i64, i64, Duration)) -> Result<Check, Fail> {
    let rows = db.pairs("SELECT event_id, status FROM webhook_deliveries").await?;
    let mut by_status: HashMap<String, u64> = HashMap::new();
    let mut delivered = HashSet::new();
    let mut known = HashSet::new();
    for (event, status) in rows.iter().cloned() {
        *by_status.entry(status.clone()).or_default() += 1;
        if status == "delivered" {
            delivered.insert(bare(&event).to_owned());
        }
        known.insert(bare(&event).to_owned());
    }
    let mut accepted: HashMap<&str, u32> = HashMap::new();
    for r in receipts.iter().filter(|r| r.accepted) {
        *accepted.entry(bare(&r.event_id)).or_default() += 1;
    }
    let mut v = Vec::new();
    for (event, n) in &accepted {
        if *n > 1 {
            v.push(format!("event {event} was delivered and accepted {n} times"));
        }
        if !known.contains(*event) {
            v.push(format!("event {event} was received but has no delivery in the database"));
        }
    }
    for event in &delivered {
        if !accepted.contains_key(event.as_str()) {
            v.push(format!("delivery of event {event} is marked delivered but the receiver never accepted it"));
        }
    }
    let (undispatched, pending, waited) = left;
    if undispatched > 0 || pending > 0 {
        v.push(format!("after waiting {waited:.1?}: {undispatched} events not dispatched, {pending} deliveries still pending"));
    }
    let refused = receipts.iter().filter(|r| !r.accepted).count();
    let mut types: HashMap<&str, u32> = HashMap::new();
    for r in receipts {
        *types.entry(r.event_type.as_str()).or_default() += 1;
    }
    let mut types: Vec<_> = types.into_iter().collect();
    types.sort();
    let mut statuses: Vec<_> = by_status.into_iter().collect();
    statuses.sort();
    let mut lags: Vec<i64> = receipts.iter().filter(|r| r.accepted).filter_map(|r| r.lag_ms).collect();
    lags.sort_unstable();
    let pct = |p: f64| lags.get(((lags.len() as f64 * p) as usize).min(lags.len().saturating_sub(1))).copied().unwrap_or(0);
    let detail = format!(
        "{} deliveries in the database {statuses:?}; received {} posts ({} answered 503 on purpose and retried), {} distinct events accepted, none twice; from event to acceptance p50 {} ms, p99 {} ms, max {} ms; the backlog drained {waited:.1?} after the probes; by type {types:?}",
        rows.len(),
        receipts.len(),
        refused,
        accepted.len(),
        pct(0.5),
        pct(0.99),
        lags.last().copied().unwrap_or(0)
    );
    Ok(Check::new("each webhook delivery received once", &v, detail))
}

/// Every 2xx write is in the database: each allocation's transfer (with its amount), each org,
/// project, job and minted key; each revoked key is revoked; each child's credit config and
/// status are what the last 2xx answer for it said.
pub async fn writes(db: &mut Db, writes: &[Write]) -> Result<Check, Fail> {
    async fn ids(db: &mut Db, sql: &str) -> Result<HashMap<String, String>, Fail> {
        Ok(db.pairs(sql).await?.into_iter().map(|(id, v)| (bare(&id).to_owned(), v)).collect())
    }
    let transfers = ids(db, "SELECT id, CAST(amount AS TEXT) FROM transfers").await?;
    let orgs = ids(db, "SELECT id, status FROM organizations").await?;
    let projects = ids(db, "SELECT id, status FROM projects").await?;
    let killed = ids(db, "SELECT id, CAST(killed AS TEXT) FROM api_keys").await?;
    let posts = ids(db, "SELECT id, status FROM scheduled_posts").await?;
    let deliveries = ids(db, "SELECT id, status FROM webhook_deliveries").await?;
    let jobs = ids(db, "SELECT id, status FROM jobs").await?;
    let keys = ids(db, "SELECT id, status FROM api_keys").await?;
    let endpoints = ids(db, "SELECT id, status FROM webhook_endpoints").await?;
    let configs = ids(
        db,
        "SELECT org_id, COALESCE(CAST(monthly_cap AS TEXT), '-') || ',' || COALESCE(CAST(refill_threshold AS TEXT), '-') || ',' || COALESCE(CAST(refill_amount AS TEXT), '-') FROM wallets",
    )
    .await?;
    let mut v = Vec::new();
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let mut last_config: HashMap<&str, String> = HashMap::new();
    let mut last_status: HashMap<&str, &str> = HashMap::new();
    let mut revoked = HashSet::new();
    // An endpoint deleted later (2xx) is rightly gone.
    let deleted: HashSet<&str> =
        writes.iter().filter_map(|w| if let Write::EndpointDeleted { id } = w { Some(bare(id)) } else { None }).collect();
    let missing = |v: &mut Vec<String>, table: &HashMap<String, String>, what: &str, id: &str| {
        if !table.contains_key(bare(id)) {
            v.push(format!("{what} {id} was answered 2xx but is not in the database"));
        }
    };
    for w in writes {
        let kind = match w {
            Write::Org { id } => {
                missing(&mut v, &orgs, "org", id);
                "orgs"
            }
            Write::Project { id } => {
                missing(&mut v, &projects, "project", id);
                "projects"
            }
            Write::Endpoint { id } => {
                if !deleted.contains(bare(id)) {
                    missing(&mut v, &endpoints, "webhook endpoint", id);
                }
                "endpoints"
            }
            Write::Allocation { txn, credits, .. } => {
                match transfers.get(bare(txn)) {
                    Some(a) if *a == credits.to_string() => {}
                    Some(a) => v.push(format!("allocation {txn} of {credits} is stored with amount {a}")),
                    None => missing(&mut v, &transfers, "allocation", txn),
                }
                "allocations"
            }
            Write::Job { id } => {
                missing(&mut v, &jobs, "job", id);
                "jobs"
            }
            Write::KeyMinted { id } => {
                missing(&mut v, &keys, "key", id);
                "keys minted"
            }
            Write::KeyRevoked { id } => {
                revoked.insert(bare(id));
                "keys revoked"
            }
            Write::Config { child, config } => {
                let f = |x: &Option<i64>| x.map_or("-".to_owned(), |n| n.to_string());
                last_config.insert(bare(child), format!("{},{},{}", f(&config[0]), f(&config[1]), f(&config[2])));
                "credit-config changes"
            }
            Write::Status { child, status } => {
                // Archived is terminal: whichever answer came back last, it wins.
                if last_status.get(bare(child)) != Some(&"archived") {
                    last_status.insert(bare(child), status.as_str());
                }
                if status == "archived" { "archives" } else { "suspends/resumes" }
            }
            Write::KeyRotated { new, .. } => {
                missing(&mut v, &keys, "rotated key", new);
                "keys rotated"
            }
            Write::KeyKilled { id } => {
                if killed.get(bare(id)).map(String::as_str) != Some("1") {
                    v.push(format!("key {id} was killed (2xx) but the database holds killed = {:?}", killed.get(bare(id))));
                }
                "keys killed"
            }
            Write::EndpointDeleted { id } => {
                if endpoints.contains_key(bare(id)) {
                    v.push(format!("webhook endpoint {id} was deleted (2xx) but is still in the database"));
                }
                "endpoints deleted"
            }
            Write::ProjectArchived { id } => {
                if projects.get(bare(id)).map(String::as_str) != Some("archived") {
                    v.push(format!("project {id} was archived (2xx) but is {:?} in the database", projects.get(bare(id))));
                }
                "projects archived"
            }
            Write::Post { id } => {
                missing(&mut v, &posts, "scheduled post", id);
                "posts scheduled"
            }
            Write::Delivery { id } => {
                missing(&mut v, &deliveries, "delivery", id);
                "deliveries queued (test pings, replays)"
            }
        };
        *counts.entry(kind).or_default() += 1;
    }
    for id in revoked {
        if keys.get(id).map(String::as_str) != Some("revoked") {
            v.push(format!("key {id} was revoked (2xx) but is {:?} in the database", keys.get(id)));
        }
    }
    for (child, want) in &last_config {
        if configs.get(*child) != Some(want) {
            v.push(format!("{child}: the last credit-config answer was {want}, the database holds {:?}", configs.get(*child)));
        }
    }
    for (child, want) in &last_status {
        if orgs.get(*child).map(String::as_str) != Some(*want) {
            v.push(format!("{child}: the last suspend/resume answered {want}, the database holds {:?}", orgs.get(*child)));
        }
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort();
    let detail = format!("{} writes answered 2xx, each found in the database: {counts:?}", writes.len());
    Ok(Check::new("every 2xx write is in the database", &v, detail))
}

/// `strata ledger check --json` against the drill's database.
pub async fn ledger(launcher: &Launcher) -> Result<Check, Fail> {
    let out = match launcher.operator(&["ledger", "check", "--json"]).await {
        Ok(out) => out,
        // A broken ledger exits non-zero; its JSON is in the message, so say so plainly.
        Err(e) => return Ok(Check::new("ledger invariants (strata ledger check)", std::slice::from_ref(&e), String::new())),
    };
    let r: serde_json::Value = serde_json::from_str(out.trim()).map_err(|e| format!("ledger check printed no JSON ({e}): {out}"))?;
    let violations: Vec<String> =
        r["violations"].as_array().into_iter().flatten().map(|x| x.as_str().unwrap_or_default().to_owned()).collect();
    let detail = format!(
        "{} wallets, {} transfers; created {}, destroyed {}, held {}",
        r["wallets"], r["transfers"], r["created"], r["destroyed"], r["held"]
    );
    Ok(Check::new("ledger invariants (strata ledger check)", &violations, detail))
}

/// The violations seen while the traffic ran, as one check.
pub fn during(violations: &[String], detail: String) -> Check {
    Check::new(
        "no 5xx, no transport error, a fresh key good at once and a revoked one refused within 1 s on the next node",
        violations,
        detail,
    )
}

/// At most one node provisioned a first partner when the three started together on the empty
/// database.
pub fn bootstrap(provisioned: usize) -> Check {
    let v = if provisioned > 1 { vec![format!("{provisioned} nodes each provisioned a first partner org")] } else { vec![] };
    Check::new("nodes starting together on an empty database provision one partner", &v, format!("{provisioned} node(s) provisioned one"))
}
