//! The crash and chaos drills' own checks: each Idempotency-Key had exactly one effect (none
//! for a key answered with an error), a replay answers what the first answer said, nothing
//! landed in a child after its archive, and every committed event of an org that is not archived
//! reached the firehose receiver.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::api::{Api, Receipt, Req};
use super::checks::Check;
use super::db::Db;
use super::mixed::{Effect, Keyed, World, named_id};
use super::processes::Fail;

/// The id without its `prefix_` (the database may store either form).
fn bare(id: &str) -> &str {
    id.split_once('_').map_or(id, |(_, rest)| rest)
}

/// `field` of the JSON object in `text`, as a string.
fn json_str(text: &str, pointer: &str) -> Option<String> {
    serde_json::from_str::<Value>(text).ok()?.pointer(pointer)?.as_str().map(str::to_owned)
}

/// Groups the first column of `sql`'s (value, json) rows by the string at `pointer` in the JSON.
async fn per_key(db: &mut Db, sql: &str, pointer: &str) -> Result<HashMap<String, Vec<String>>, Fail> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (id, json) in db.pairs(sql).await? {
        if let Some(k) = json_str(&json, pointer) {
            out.entry(k).or_default().push(id);
        }
    }
    Ok(out)
}

/// Each key answered 2xx made exactly one thing (an allocation: one transfer with two ledger
/// entries naming it); each key answered otherwise made nothing.
pub async fn exactly_once(db: &mut Db, keyed: &[Keyed]) -> Result<Check, Fail> {
    // Keyed by drillKey, each allocation entry's metadata (which names its transfer).
    let ledger = per_key(db, "SELECT metadata, metadata FROM credit_events WHERE event_type = 'allocation'", "/drillKey").await?;
    let orgs = per_key(db, "SELECT id, metadata FROM organizations", "/drillKey").await?;
    let projects = per_key(db, "SELECT id, metadata FROM projects", "/drillKey").await?;
    let endpoints = per_key(db, "SELECT id, metadata FROM webhook_endpoints", "/drillKey").await?;
    let jobs = per_key(db, "SELECT id, brief FROM jobs", "/topic").await?;
    let successors: HashSet<String> =
        db.rows("SELECT superseded_by FROM api_keys").await?.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect();
    let mut keys: HashMap<String, u32> = HashMap::new();
    for (id, name) in db.pairs("SELECT id, name FROM api_keys").await? {
        if !successors.contains(&id) && !successors.contains(&format!("key_{}", bare(&id))) {
            *keys.entry(name).or_default() += 1;
        }
    }
    let mut migrated: HashMap<String, u32> = HashMap::new();
    for (name, _) in db.pairs("SELECT name, id FROM organizations").await? {
        *migrated.entry(name).or_default() += 1;
    }
    let deleted: HashSet<String> = keyed
        .iter()
        .filter(|k| {
            k.sent.method == reqwest::Method::DELETE && k.sent.path.starts_with("/v1/webhook-endpoints/") && (200..300).contains(&k.status)
        })
        .map(|k| bare(k.sent.path.rsplit('/').next().unwrap_or_default()).to_owned())
        .collect();
    let mut v = Vec::new();
    let mut counted = 0;
    for k in keyed.iter().filter(|k| k.effect != Effect::None) {
        let key = &k.sent.idem;
        let found = match k.effect {
            Effect::Allocation => {
                let entries = ledger.get(key).map_or(0, Vec::len);
                // Two entries per transfer: parent and child.
                let transfer_ids: HashSet<Option<String>> =
                    ledger.get(key).into_iter().flatten().map(|m| json_str(m, "/transferId").map(|t| bare(&t).to_owned())).collect();
                if entries > 0 && (transfer_ids.len() != 1 || (k.status == 201 && !transfer_ids.contains(&Some(bare(&k.id).to_owned())))) {
                    v.push(format!("allocation key {key}: ledger entries name transfers {transfer_ids:?}, the answer named {}", k.id));
                }
                entries / 2 + entries % 2
            }
            Effect::Org => orgs.get(key).map_or(0, Vec::len),
            Effect::Project => projects.get(key).map_or(0, Vec::len),
            Effect::Endpoint if deleted.contains(bare(&k.id)) => continue,
            Effect::Endpoint => endpoints.get(key).map_or(0, Vec::len),
            Effect::Job => jobs.get(key).map_or(0, Vec::len),
            Effect::Key => keys.get(&format!("drill {key}")).copied().unwrap_or(0) as usize,
            Effect::Migrated => migrated.get(&format!("drill migrated {key}")).copied().unwrap_or(0) as usize,
            Effect::None => continue,
        };
        counted += 1;
        let want = match k.status {
            0 => None,
            s if (200..300).contains(&s) => Some(1),
            _ => Some(0),
        };
        if want.is_some_and(|w| w != found) || (want.is_none() && found > 1) {
            v.push(format!(
                "{:?} key {key} (answered {}, sent again: {}) has {found} effects in the database",
                k.effect, k.status, k.retried
            ));
        }
    }
    let detail = format!(
        "{counted} keyed creations counted in the database ({} of them sent more than once)",
        keyed.iter().filter(|k| k.retried && k.effect != Effect::None).count()
    );
    Ok(Check::new("each Idempotency-Key has exactly one effect", &v, detail))
}

/// Sends every 2xx keyed write again with its key: the answer must be the stored one (same
/// status and id, `Idempotent-Replayed: true`, an allocation's body `"replayed": true`).
pub async fn replays(api: &Api, admin: &str, keyed: &[Keyed]) -> Result<Check, Fail> {
    let acked: Vec<&Keyed> = keyed.iter().filter(|k| (200..300).contains(&k.status)).collect();
    let started = Instant::now();
    let mut v = Vec::new();
    for chunk in acked.chunks(16) {
        let sends = chunk.iter().map(|k| {
            let req = Req {
                node: 0,
                method: k.sent.method.clone(),
                path: k.sent.path.clone(),
                key: admin,
                acting: k.sent.acting.as_deref(),
                idem: Some(k.sent.idem.clone()),
                body: k.sent.body.clone(),
            };
            api.send(req)
        });
        for (k, r) in chunk.iter().zip(futures::future::join_all(sends).await) {
            let Some(r) = r else {
                v.push(format!("replaying {} {} got no answer", k.sent.method, k.sent.path));
                continue;
            };
            let replayed = r.headers.get("idempotent-replayed").is_some_and(|h| h == "true");
            let allocation = k.effect == Effect::Allocation;
            if r.status != k.status || named_id(&r) != k.id || !replayed || (allocation && r.body["replayed"] != Value::Bool(true)) {
                v.push(format!(
                    "{} {} key {}: first answered {} {}, the replay {} {} (replayed header: {replayed})",
                    k.sent.method,
                    k.sent.path,
                    k.sent.idem,
                    k.status,
                    k.id,
                    r.status,
                    named_id(&r)
                ));
            }
        }
    }
    let detail = format!("{} acknowledged writes sent again with their keys in {:.1} s", acked.len(), started.elapsed().as_secs_f64());
    Ok(Check::new("a replay answers what the first answer said", &v, detail))
}

/// Nothing landed in an archived child after its archive: none of its keys is active, its
/// wallet holds nothing but reservations, and no endpoint, project or job of it was made after
/// `archivedAt`.
pub async fn archived(db: &mut Db) -> Result<Check, Fail> {
    let rows = db
        .rows(
            "SELECT o.id, CAST(o.archived_at AS TEXT), \
             (SELECT CAST(count(*) AS TEXT) FROM api_keys k WHERE k.org_id = o.id AND k.status = 'active'), \
             CAST(w.included_remaining + w.prepaid_balance - w.reserved AS TEXT), \
             (SELECT CAST(count(*) AS TEXT) FROM webhook_endpoints e WHERE e.org_id = o.id AND e.created_at > o.archived_at), \
             (SELECT CAST(count(*) AS TEXT) FROM projects p WHERE p.org_id = o.id AND p.created_at > o.archived_at), \
             (SELECT CAST(count(*) AS TEXT) FROM jobs j WHERE j.org_id = o.id AND j.started_at > o.archived_at) \
             FROM organizations o JOIN wallets w ON w.org_id = o.id WHERE o.status = 'archived'",
        )
        .await?;
    let mut v = Vec::new();
    for r in &rows {
        let f = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        let (org, keys, available, endpoints, projects, jobs) = (f(0), f(2), f(3), f(4), f(5), f(6));
        if keys != "0" || available != "0" || endpoints != "0" || projects != "0" || jobs != "0" {
            v.push(format!(
                "archived {org}: {keys} active keys, {available} credits available, made after the archive: {endpoints} endpoints, {projects} projects, {jobs} jobs"
            ));
        }
    }
    Ok(Check::new("nothing lands in an archived child", &v, format!("{} archived children", rows.len())))
}

/// Waits (at most `limit`) until no job runs, every event is dispatched and no delivery of an
/// org that is not archived to an endpoint that still exists (a delivery made for an endpoint
/// deleted at the same moment waits for the retention sweep) is pending; returns how long it waited and, when it gave up, what
/// was still busy.
pub async fn settle(db: &mut Db, limit: Duration) -> Result<(Duration, Option<String>), Fail> {
    let started = Instant::now();
    loop {
        let jobs = db.count("SELECT count(*) FROM jobs WHERE status = 'running'").await?;
        let undispatched = db.count("SELECT count(*) FROM events WHERE dispatched = 0").await?;
        let pending = db
            .count(
                "SELECT count(*) FROM webhook_deliveries d JOIN organizations o ON o.id = d.event_org_id \
                 JOIN webhook_endpoints e ON e.id = d.endpoint_id \
                 WHERE d.status IN ('pending', 'delivering') AND o.status <> 'archived' AND e.status = 'active'",
            )
            .await?;
        if jobs + undispatched + pending == 0 {
            return Ok((started.elapsed(), None));
        }
        if started.elapsed() > limit {
            let busy = format!("{jobs} jobs running, {undispatched} events not dispatched, {pending} deliveries pending");
            return Ok((started.elapsed(), Some(busy)));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The ids of every event `GET /v1/events` lists for the caller's org (or `acting`), page by page.
async fn listed_events(api: &Api, admin: &str, acting: Option<&str>) -> Result<HashSet<String>, Fail> {
    let mut ids = HashSet::new();
    let mut cursor = String::new();
    loop {
        let path = if cursor.is_empty() { "/v1/events?limit=100".to_owned() } else { format!("/v1/events?limit=100&cursor={cursor}") };
        let mut req = Req::get(0, path, admin);
        req.acting = acting;
        let r =
            api.send(req).await.filter(|r| r.status == 200).ok_or_else(|| format!("GET /v1/events as {acting:?} did not answer 200"))?;
        for item in r.body["items"].as_array().into_iter().flatten() {
            ids.insert(bare(item["id"].as_str().unwrap_or_default()).to_owned());
        }
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => return Ok(ids),
        }
    }
}

/// Every committed event (after the firehose was made) of the partner or of a child that is
/// not archived was accepted at least once by the firehose's receiver, under its own event id;
/// and `GET /v1/events` of the partner and of each working child that is not archived lists
/// every one of theirs.
pub async fn delivered(db: &mut Db, api: &Api, world: &World, receipts: &[Receipt]) -> Result<Check, Fail> {
    let start = db
        .rows(&format!(
            "SELECT CAST(start_seq AS TEXT) FROM webhook_endpoints WHERE id = '{}' OR id = '{}'",
            world.firehose,
            bare(&world.firehose)
        ))
        .await?;
    let start: i64 = start
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|s| s.parse().ok())
        .ok_or("the firehose endpoint is not in the database")?;
    let events = db
        .rows(&format!(
            "SELECT e.id, e.event_type, o.status, e.org_id FROM events e JOIN organizations o ON o.id = e.org_id WHERE e.seq > {start} AND e.event_type <> 'test.ping'"
        ))
        .await?;
    let accepted: HashSet<&str> = receipts.iter().filter(|r| r.accepted && r.tag.is_empty()).map(|r| bare(&r.event_id)).collect();
    let mut v = Vec::new();
    let (mut live, mut skipped) = (0, 0);
    let mut by_org: HashMap<String, Vec<String>> = HashMap::new();
    for e in &events {
        let f = |i: usize| e.get(i).cloned().flatten().unwrap_or_default();
        if f(2) == "archived" {
            skipped += 1;
            continue;
        }
        live += 1;
        if !accepted.contains(bare(&f(0))) {
            v.push(format!("event {} ({}) was committed but never reached the firehose", f(0), f(1)));
        }
        by_org.entry(bare(&f(3)).to_owned()).or_default().push(bare(&f(0)).to_owned());
    }
    // The API's view: the partner's own log, and each working child's that is still live.
    let mut orgs: Vec<Option<&str>> = vec![None];
    orgs.extend(world.children.iter().map(|(c, _)| Some(c.as_str())).filter(|c| c.is_some_and(|c| by_org.contains_key(bare(c)))));
    let mut listed = 0;
    for org in orgs {
        let ids = listed_events(api, &world.admin, org).await?;
        let key = bare(org.unwrap_or(&world.partner)).to_owned();
        for id in by_org.get(&key).into_iter().flatten() {
            listed += 1;
            if !ids.contains(id) {
                v.push(format!("event {id} of {key} is committed but GET /v1/events does not list it"));
            }
        }
    }
    let copies = receipts.iter().filter(|r| r.accepted && r.tag.is_empty()).count();
    let detail = format!(
        "{live} events of live orgs, each accepted by the receiver under its event id ({copies} accepted posts, {} duplicates), {listed} of them found in GET /v1/events of their org; {skipped} events of archived children not required",
        copies.saturating_sub(accepted.len())
    );
    Ok(Check::new("every committed event of a live org is delivered at least once", &v, detail))
}
