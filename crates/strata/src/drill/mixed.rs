//! The crash and chaos drills' traffic: clients mixing every write route over a partner's
//! children. Each write carries an Idempotency-Key chosen once; a request that gets no answer
//! (the server was killed, the connection refused or reset) is sent again with that same key
//! until it is answered, and so is one answered 409 in progress (its first attempt died holding
//! the claim). Every final answer is logged with its key, so the checks can find each
//! acknowledged write in the database, count each key's effects and replay it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::api::{Api, Reply, Req};
use super::workload::{Log, Rng, Write, lock};

/// How long a client keeps sending one request again before it gives up and reports it.
const GIVE_UP: Duration = Duration::from_secs(90);

/// Every event the firehose and the children's endpoints subscribe to (the catalog less
/// `test.ping`, which reaches an endpoint whatever its filter).
pub const EVENTS: [&str; 19] = [
    "job.completed",
    "job.failed",
    "job.canceled",
    "content.generated",
    "post.scheduled",
    "post.published",
    "post.failed",
    "post.canceled",
    "organization.created",
    "organization.suspended",
    "organization.resumed",
    "organization.archived",
    "credits.allocated",
    "credits.refilled",
    "credits.low",
    "api_key.created",
    "api_key.rotated",
    "api_key.revoked",
    "test.ping",
];

/// A write as sent, owned, so it can be sent again at the end (the replay check).
#[derive(Clone, Debug)]
pub struct Sent {
    pub method: Method,
    pub path: String,
    pub acting: Option<String>,
    pub idem: String,
    pub body: Option<Value>,
}

/// What a key's effect is, for counting effects per key in the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Two ledger entries carrying `metadata.drillKey`, one transfer.
    Allocation,
    /// A row whose metadata carries `drillKey`.
    Org,
    Project,
    Endpoint,
    /// A job whose brief's topic is the key.
    Job,
    /// A key named `drill <key>` (a rotation's successor keeps the name: not counted).
    Key,
    /// A child org named `drill migrated <key>`.
    Migrated,
    /// No row to count (a state change, or a row that cannot carry the key).
    None,
}

/// One keyed write and its final answer.
#[derive(Clone, Debug)]
pub struct Keyed {
    pub sent: Sent,
    pub effect: Effect,
    /// The final status (0: never answered within `GIVE_UP`).
    pub status: u16,
    /// The id the answer named (`id`, `jobId`, `apiKey.id`, …), empty when none.
    pub id: String,
    /// Whether it had to be sent more than once.
    pub retried: bool,
}

/// Counts the clients keep beside the API's tally.
#[derive(Default)]
pub struct Stats {
    /// Sends of a write again after no answer.
    pub retries: AtomicU64,
    /// Sends again after a 409 in progress.
    pub in_progress: AtomicU64,
    pub keyed: std::sync::Mutex<Vec<Keyed>>,
}

/// What the clients work on.
pub struct World {
    pub admin: String,
    /// The partner's organization id.
    pub partner: String,
    /// Children with their first project.
    pub children: Vec<(String, String)>,
    /// Children `doomed..` are archived during the run, each while other writes race it.
    pub doomed: usize,
    next_doomed: AtomicUsize,
    /// The receiver's base URL (`…/hook`).
    pub hook: String,
    /// The partner's firehose endpoint.
    pub firehose: String,
}

impl World {
    /// No children yet (setup adds them); children from `doomed` on will be archived.
    pub fn new(admin: &str, partner: &str, hook: &str, doomed: usize) -> Self {
        World {
            admin: admin.to_owned(),
            partner: partner.to_owned(),
            children: Vec::new(),
            doomed,
            next_doomed: AtomicUsize::new(0),
            hook: hook.to_owned(),
            firehose: String::new(),
        }
    }
}

/// The mixed clients' shared handles.
#[derive(Clone)]
pub struct Traffic {
    pub api: Api,
    pub log: Arc<Log>,
    pub stats: Arc<Stats>,
    pub world: Arc<World>,
    /// Set to end the traffic: each client stops before its next turn.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Traffic {
    /// Sends `req` until it is answered (no answer and 409 in progress are sent again with the
    /// same Idempotency-Key), logs the answer, and returns it (`None` after `GIVE_UP`).
    pub async fn write(&self, req: Req<'_>, effect: Effect) -> Option<Reply> {
        let started = Instant::now();
        let mut retried = false;
        let reply = loop {
            match self.api.send(req.clone()).await {
                Some(r) if r.status == 409 && r.str("/error/details/reason") == "in_progress" => {
                    self.stats.in_progress.fetch_add(1, Ordering::Relaxed);
                }
                Some(r) => break Some(r),
                None => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                }
            }
            retried = true;
            if started.elapsed() > GIVE_UP {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let id = reply.as_ref().filter(|r| r.ok()).map(named_id).unwrap_or_default();
        let sent = Sent {
            method: req.method.clone(),
            path: req.path.clone(),
            acting: req.acting.map(str::to_owned),
            idem: req.idem.clone().unwrap_or_default(),
            body: req.body.clone(),
        };
        let status = reply.as_ref().map_or(0, |r| r.status);
        lock(&self.stats.keyed).push(Keyed { sent, effect, status, id, retried });
        reply
    }

    /// A write as admin, logging `w(reply)` when it is answered 2xx.
    async fn logged(&self, req: Req<'_>, effect: Effect, w: impl FnOnce(&Reply) -> Option<Write>) -> Option<Reply> {
        let node = req.node;
        let r = self.write(req, effect).await?;
        if r.ok()
            && let Some(w) = w(&r)
        {
            self.log.write(node, w);
        }
        Some(r)
    }
}

/// The id a 2xx answer names, wherever the route puts it.
pub fn named_id(r: &Reply) -> String {
    ["/id", "/jobId", "/apiKey/id", "/endpoint/id", "/replayDeliveryId", "/deliveryId", "/endpointId"]
        .iter()
        .map(|p| r.str(p))
        .find(|s| !s.is_empty())
        .unwrap_or_default()
}

/// What one client remembers of what it made, to work on it later.
#[derive(Default)]
struct Mine {
    /// (child index, key id) of child keys it minted and has not revoked.
    keys: Vec<(usize, String)>,
    /// Its own keys of the partner's org (minted with `POST /v1/api-keys`).
    own_keys: Vec<String>,
    /// (child index, endpoint id).
    endpoints: Vec<(usize, String)>,
    /// (child index, project id) of projects it created.
    projects: Vec<(usize, String)>,
    /// (child index, job id, first container id).
    jobs: Vec<(usize, String, String)>,
    /// (child index, project id, post id).
    posts: Vec<(usize, String, String)>,
}

/// Runs client `c` of `clients` until `t.stop` is set (checked between turns): every write
/// route, reads, and now and then an archive of a doomed child raced by an allocation, a
/// generation, a key mint and an endpoint creation on the same child. Children `i` with
/// `i % clients == c` are this client's for credit-config and suspend/resume, so the last
/// answer for each is the state the database must hold. At the end it resumes the children it
/// left suspended, so their held deliveries flow.
pub async fn client(t: Traffic, c: usize, clients: usize, seed: u64) {
    let mut rng = Rng::new(seed ^ (c as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let w = t.world.clone();
    let n = w.children.len();
    let owned: Vec<usize> = (0..n).filter(|i| i % clients == c).collect();
    let mut suspended = vec![false; n];
    let mut mine = Mine::default();
    let admin = w.admin.as_str();
    while !t.stop.load(Ordering::Relaxed) {
        let i = rng.below(n as u64) as usize;
        let (child, project) = (w.children[i].0.as_str(), w.children[i].1.as_str());
        // The Idempotency-Key of this turn's write, also written into what the write makes.
        let k = ulid::Ulid::new().to_string();
        let kw =
            |method: Method, path: String, body: Option<Value>| Req { idem: Some(k.clone()), ..Req::write(0, method, path, admin, body) };
        let own = (!owned.is_empty()).then(|| owned[rng.below(owned.len() as u64) as usize]);
        match rng.below(100) {
            0..=19 => {
                allocate(&t, child, 1 + rng.below(10) as i64).await;
            }
            20..=26 => {
                if let Some(r) = generate(&t, child, project).await {
                    mine.jobs.push((i, r.str("/jobId"), r.str("/containerIds/0")));
                }
            }
            27..=31 => {
                let path = match rng.below(4) {
                    0 => "/v1/whoami".to_owned(),
                    1 => format!("/v1/organizations/{child}"),
                    2 => format!("/v1/organizations/{child}/credits"),
                    _ => "/v1/events?limit=5".to_owned(),
                };
                let _ = t.api.send(Req::get(0, path, admin)).await;
            }
            32..=34 if own.is_some() => {
                let o = &w.children[own.unwrap_or_default()].0;
                let cap = [Value::Null, json!(1_000_000), json!(3_000)][rng.below(3) as usize].clone();
                let (threshold, amount) = match rng.below(3) {
                    0 => (Value::Null, Value::Null),
                    k => (json!(2_000 + 1_000 * k), json!(500)),
                };
                let body = json!({ "monthlyCreditCap": cap, "refillThreshold": threshold, "refillAmount": amount });
                let req = Req::write(0, Method::PATCH, format!("/v1/organizations/{o}/credit-config"), admin, Some(body));
                t.logged(req, Effect::None, |r| {
                    let get = |f: &str| r.body["config"][f].as_i64();
                    Some(Write::Config { child: o.clone(), config: [get("monthlyCreditCap"), get("refillThreshold"), get("refillAmount")] })
                })
                .await;
            }
            35 if own.is_some() => {
                let o = own.unwrap_or_default();
                let action = if suspended[o] { "resume" } else { "suspend" };
                if set_status(&t, &w.children[o].0, action).await == Some(true) {
                    suspended[o] = !suspended[o];
                }
            }
            36..=39 => {
                if let Some(r) = mint_key(&t, child).await {
                    mine.keys.push((i, r.str("/apiKey/id")));
                }
            }
            40..=41 if !mine.keys.is_empty() => {
                let at = rng.below(mine.keys.len() as u64) as usize;
                let (ci, id) = mine.keys[at].clone();
                let path = format!("/v1/organizations/{}/api-keys/{id}/rotate", w.children[ci].0);
                let r = t.logged(Req::write(0, Method::POST, path, admin, None), Effect::None, |r| {
                    Some(Write::KeyRotated { old: id.clone(), new: r.str("/apiKey/id") })
                });
                if let Some(r) = r.await.filter(Reply::ok) {
                    mine.keys[at].1 = r.str("/apiKey/id");
                }
            }
            42..=43 if !mine.keys.is_empty() => {
                let (ci, id) = mine.keys.swap_remove(rng.below(mine.keys.len() as u64) as usize);
                let path = format!("/v1/organizations/{}/api-keys/{id}", w.children[ci].0);
                t.logged(Req::write(0, Method::DELETE, path, admin, None), Effect::None, |_| Some(Write::KeyRevoked { id: id.clone() }))
                    .await;
            }
            // At most two live endpoints per client: every event of a child goes to each of its
            // endpoints, and more would make the drill a webhook fan-out benchmark.
            44..=46 if mine.endpoints.len() < 2 => {
                if let Some(r) = create_endpoint(&t, child).await {
                    mine.endpoints.push((i, r.str("/endpoint/id")));
                }
            }
            47..=50 if !mine.endpoints.is_empty() => {
                let at = rng.below(mine.endpoints.len() as u64) as usize;
                let (ci, id) = mine.endpoints[at].clone();
                let child = w.children[ci].0.as_str();
                let base = format!("/v1/webhook-endpoints/{id}");
                let (req, write): (Req, fn(String) -> Write) = match rng.below(4) {
                    0 => (Req::write(0, Method::PATCH, base, admin, Some(json!({ "description": format!("drill {k}") }))), |id| {
                        Write::Endpoint { id }
                    }),
                    1 => (Req::write(0, Method::POST, format!("{base}/rotate-secret"), admin, None), |id| Write::Endpoint { id }),
                    2 => {
                        (Req::write(0, Method::POST, format!("{base}/test"), admin, Some(json!({ "payload": { "drillKey": k } }))), |id| {
                            Write::Delivery { id }
                        })
                    }
                    _ => {
                        mine.endpoints.swap_remove(at);
                        (Req::write(0, Method::DELETE, base, admin, None), |id| Write::EndpointDeleted { id })
                    }
                };
                t.logged(req.acting(child), Effect::None, |r| {
                    Some(write(if r.str("/deliveryId").is_empty() { id.clone() } else { r.str("/deliveryId") }))
                })
                .await;
            }
            51..=53 => {
                let body = json!({ "name": format!("drill {k}"), "timezone": "UTC", "metadata": { "drillKey": k } });
                let req = kw(Method::POST, "/v1/projects".into(), Some(body)).acting(child);
                if let Some(r) = t.logged(req, Effect::Project, |r| Some(Write::Project { id: r.str("/id") })).await.filter(Reply::ok) {
                    mine.projects.push((i, r.str("/id")));
                }
            }
            54..=55 if !mine.projects.is_empty() => {
                let at = rng.below(mine.projects.len() as u64) as usize;
                let (ci, id) = mine.projects[at].clone();
                let path = format!("/v1/projects/{id}");
                let req = if rng.below(2) == 0 {
                    Req::write(0, Method::PATCH, path, admin, Some(json!({ "name": format!("drill {k}") })))
                } else {
                    mine.projects.swap_remove(at);
                    Req::write(0, Method::DELETE, path, admin, None)
                };
                let archive = req.method == Method::DELETE;
                t.logged(req.acting(&w.children[ci].0), Effect::None, |_| archive.then(|| Write::ProjectArchived { id: id.clone() })).await;
            }
            56 if !mine.jobs.is_empty() => {
                let (ci, job, _) = mine.jobs.swap_remove(rng.below(mine.jobs.len() as u64) as usize);
                let req = Req::write(0, Method::POST, format!("/v1/jobs/{job}/cancel"), admin, None).acting(&w.children[ci].0);
                t.logged(req, Effect::None, |_| None).await;
            }
            57..=58 if !mine.jobs.is_empty() => {
                let (ci, _, container) = mine.jobs[rng.below(mine.jobs.len() as u64) as usize].clone();
                let (child, project) = (&w.children[ci].0, &w.children[ci].1);
                let when = time::OffsetDateTime::now_utc() + time::Duration::seconds(1 + rng.below(3) as i64);
                let when = when.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
                let body = json!({ "containerId": container, "scheduledFor": when, "platform": "tiktok" });
                let req = Req::write(0, Method::POST, format!("/v1/projects/{project}/scheduled-posts"), admin, Some(body)).acting(child);
                if let Some(r) = t.logged(req, Effect::None, |r| Some(Write::Post { id: r.str("/id") })).await.filter(Reply::ok) {
                    mine.posts.push((ci, project.clone(), r.str("/id")));
                }
            }
            59 if !mine.posts.is_empty() => {
                let (ci, project, post) = mine.posts.swap_remove(rng.below(mine.posts.len() as u64) as usize);
                let req = Req::write(0, Method::DELETE, format!("/v1/projects/{project}/scheduled-posts/{post}"), admin, None)
                    .acting(&w.children[ci].0);
                t.logged(req, Effect::None, |_| None).await;
            }
            60..=61 => {
                let body = json!({ "name": format!("drill extra {k}"), "metadata": { "drillKey": k } });
                t.logged(kw(Method::POST, "/v1/organizations".into(), Some(body)), Effect::Org, |r| Some(Write::Org { id: r.str("/id") }))
                    .await;
            }
            62 => {
                let body = json!({ "name": format!("drill child {i} {k}") });
                t.logged(Req::write(0, Method::PATCH, format!("/v1/organizations/{child}"), admin, Some(body)), Effect::None, |_| None)
                    .await;
            }
            63..=64 => {
                let body = json!({ "name": format!("drill {k}"), "scopes": ["credits:read"] });
                let req = kw(Method::POST, "/v1/api-keys".into(), Some(body));
                if let Some(r) = t.logged(req, Effect::Key, |r| Some(Write::KeyMinted { id: r.str("/apiKey/id") })).await.filter(Reply::ok)
                {
                    mine.own_keys.push(r.str("/apiKey/id"));
                }
            }
            65 if !mine.own_keys.is_empty() => {
                let id = mine.own_keys[rng.below(mine.own_keys.len() as u64) as usize].clone();
                t.logged(Req::write(0, Method::POST, format!("/v1/api-keys/{id}/rotate"), admin, None), Effect::None, |_| None).await;
            }
            66 if !mine.own_keys.is_empty() => {
                let id = mine.own_keys.swap_remove(rng.below(mine.own_keys.len() as u64) as usize);
                t.logged(Req::write(0, Method::POST, format!("/v1/api-keys/{id}/kill"), admin, None), Effect::None, |_| {
                    Some(Write::KeyKilled { id: id.clone() })
                })
                .await;
            }
            67 => migrate(&t).await,
            // Recovering requeues every failed delivery since then: a partner does it now and
            // then, for the last moments; so does the drill.
            68 if rng.below(8) == 0 => {
                let since = time::OffsetDateTime::now_utc() - time::Duration::seconds(10);
                let since = since.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
                let path = format!("/v1/webhook-endpoints/{}/recover", w.firehose);
                t.logged(Req::write(0, Method::POST, path, admin, Some(json!({ "since": since }))), Effect::None, |_| None).await;
            }
            69 => {
                let path = format!("/v1/webhook-endpoints/{}/deliveries?limit=5", w.firehose);
                let delivery = t.api.send(Req::get(0, path, admin)).await.map(|r| r.str("/items/0/id")).unwrap_or_default();
                if !delivery.is_empty() {
                    let path = format!("/v1/webhook-deliveries/{delivery}/replay");
                    t.logged(Req::write(0, Method::POST, path, admin, None), Effect::None, |r| {
                        Some(Write::Delivery { id: r.str("/replayDeliveryId") })
                    })
                    .await;
                }
            }
            70..=71 if w.doomed < n => {
                let d = w.doomed + w.next_doomed.fetch_add(1, Ordering::Relaxed);
                if d < n {
                    race_archive(&t, d).await;
                } else {
                    allocate(&t, child, 1).await;
                }
            }
            _ => {
                allocate(&t, child, 1 + rng.below(10) as i64).await;
            }
        }
    }
    for o in owned {
        if suspended[o] && set_status(&t, &w.children[o].0, "resume").await.is_none() {
            t.log.violation(format!("could not resume {} at the end of the traffic", w.children[o].0));
        }
    }
}

/// Archives doomed child `d` while an allocation, a generation, a key mint and an endpoint
/// creation race it on the same child.
async fn race_archive(t: &Traffic, d: usize) {
    let (child, project) = (&t.world.children[d].0, &t.world.children[d].1);
    let admin = t.world.admin.as_str();
    let archive = t.logged(Req::write(0, Method::DELETE, format!("/v1/organizations/{child}"), admin, None), Effect::None, |r| {
        Some(Write::Status { child: child.clone(), status: r.str("/status") })
    });
    futures::join!(archive, allocate(t, child, 7), generate(t, child, project), mint_key(t, child), create_endpoint(t, child));
}

async fn allocate(t: &Traffic, child: &str, credits: i64) -> Option<Reply> {
    let path = format!("/v1/organizations/{child}/credits/allocate");
    let mut req = Req::write(0, Method::POST, path, &t.world.admin, None);
    req.body = Some(json!({ "credits": credits, "description": "drill", "metadata": { "drillKey": req.idem } }));
    t.logged(req, Effect::Allocation, |r| Some(Write::Allocation { txn: r.str("/id"), child: child.to_owned(), credits })).await
}

async fn generate(t: &Traffic, child: &str, project: &str) -> Option<Reply> {
    let path = format!("/v1/projects/{project}/content");
    let mut req = Req::write(0, Method::POST, path, &t.world.admin, None).acting(child);
    let brief = json!({ "topic": req.idem, "angle": "drill", "cta": "none", "valuePropositions": [] });
    req.body = Some(json!({ "format": "slideshow_builder", "variantCount": 1, "brief": brief }));
    t.logged(req, Effect::Job, |r| Some(Write::Job { id: r.str("/jobId") })).await.filter(Reply::ok)
}

async fn mint_key(t: &Traffic, child: &str) -> Option<Reply> {
    let path = format!("/v1/organizations/{child}/api-keys");
    let mut req = Req::write(0, Method::POST, path, &t.world.admin, None);
    let k = req.idem.clone().unwrap_or_default();
    req.body = Some(json!({ "name": format!("drill {k}"), "scopes": ["credits:read", "projects:read"] }));
    t.logged(req, Effect::Key, |r| Some(Write::KeyMinted { id: r.str("/apiKey/id") })).await.filter(Reply::ok)
}

async fn create_endpoint(t: &Traffic, child: &str) -> Option<Reply> {
    let url = format!("{}/{child}", t.world.hook);
    let mut req = Req::write(0, Method::POST, "/v1/webhook-endpoints", &t.world.admin, None).acting(child);
    req.body = Some(json!({ "url": url, "events": EVENTS, "description": "drill child endpoint", "metadata": { "drillKey": req.idem } }));
    t.logged(req, Effect::Endpoint, |r| Some(Write::Endpoint { id: r.str("/endpoint/id") })).await.filter(Reply::ok)
}

/// Suspends or resumes `child`: `Some(true)` on 2xx, `Some(false)` on another answer (archived:
/// 409), `None` when never answered.
async fn set_status(t: &Traffic, child: &str, action: &str) -> Option<bool> {
    let req = Req::write(0, Method::POST, format!("/v1/organizations/{child}/{action}"), &t.world.admin, None);
    let r = t.logged(req, Effect::None, |r| Some(Write::Status { child: child.to_owned(), status: r.str("/status") })).await?;
    Some(r.ok())
}

/// A project of the partner's own, then `POST /v1/organizations/migrate` moving it into a new
/// child named after the key.
async fn migrate(t: &Traffic) {
    let admin = t.world.admin.as_str();
    let mut req = Req::write(0, Method::POST, "/v1/projects", admin, None);
    req.body = Some(json!({ "name": "drill to migrate", "timezone": "UTC", "metadata": { "drillKey": req.idem } }));
    let Some(r) = t.logged(req, Effect::Project, |r| Some(Write::Project { id: r.str("/id") })).await else {
        return;
    };
    if !r.ok() {
        return;
    }
    let project = r.str("/id");
    let mut req = Req::write(0, Method::POST, "/v1/organizations/migrate", admin, None);
    req.body = Some(json!({ "mapping": { project: format!("drill migrated {}", req.idem.clone().unwrap_or_default()) } }));
    t.logged(req, Effect::Migrated, |r| Some(Write::Org { id: r.str("/children/0/id") })).await;
}
