//! The drill's traffic: a partner's children, projects and webhook endpoint, then clients that
//! spread writes and reads over every node for a bounded time. Every 2xx write is logged (what,
//! its id, the node) so the checks can find each one in the database afterwards.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use reqwest::Method;
use serde_json::{Value, json};

use super::api::{Api, Req};
use super::processes::Fail;

/// One write the API accepted (2xx).
#[derive(Clone, Debug)]
pub enum Write {
    Org {
        id: String,
    },
    Project {
        id: String,
    },
    Endpoint {
        id: String,
    },
    Allocation {
        txn: String,
        child: String,
        credits: i64,
    },
    Job {
        id: String,
    },
    KeyMinted {
        id: String,
    },
    KeyRevoked {
        id: String,
    },
    /// A credit-config PATCH and the config it answered (cap, threshold, amount).
    Config {
        child: String,
        config: [Option<i64>; 3],
    },
    /// A suspend, resume or archive and the status it answered.
    Status {
        child: String,
        status: String,
    },
    /// A child key rotated: `new` exists and `old` names it as its successor.
    KeyRotated {
        old: String,
        new: String,
    },
    KeyKilled {
        id: String,
    },
    EndpointDeleted {
        id: String,
    },
    ProjectArchived {
        id: String,
    },
    Post {
        id: String,
    },
    /// A delivery made by a test ping or a replay.
    Delivery {
        id: String,
    },
}

impl Write {
    fn line(&self) -> String {
        match self {
            Write::Org { id } => format!("org created {id}"),
            Write::Project { id } => format!("project created {id}"),
            Write::Endpoint { id } => format!("webhook endpoint created {id}"),
            Write::Allocation { txn, child, credits } => format!("allocation {txn} of {credits} into {child}"),
            Write::Job { id } => format!("generation started {id}"),
            Write::KeyMinted { id } => format!("key minted {id}"),
            Write::KeyRevoked { id } => format!("key revoked {id}"),
            Write::Config { child, config } => format!("credit-config of {child} set to {config:?}"),
            Write::Status { child, status } => format!("{child} is now {status}"),
            Write::KeyRotated { old, new } => format!("key {old} rotated to {new}"),
            Write::KeyKilled { id } => format!("key killed {id}"),
            Write::EndpointDeleted { id } => format!("webhook endpoint deleted {id}"),
            Write::ProjectArchived { id } => format!("project archived {id}"),
            Write::Post { id } => format!("post scheduled {id}"),
            Write::Delivery { id } => format!("delivery queued {id}"),
        }
    }
}

/// Every 2xx write, in the order the responses came back, and the violations seen on the way.
#[derive(Default)]
pub struct Log {
    pub writes: Mutex<Vec<Write>>,
    /// Things that must never happen, seen while the traffic ran (a 500, a fresh key refused
    /// on another node, a revoked key still accepted on another node).
    pub violations: Mutex<Vec<String>>,
    lines: Mutex<Vec<String>>,
}

impl Log {
    pub fn write(&self, node: usize, w: Write) {
        lock(&self.lines).push(format!("node {}: {}", node + 1, w.line()));
        lock(&self.writes).push(w);
    }

    pub fn violation(&self, v: String) {
        lock(&self.violations).push(v);
    }

    /// The write log as text, one line per write.
    pub fn text(&self) -> String {
        lock(&self.lines).join("\n") + "\n"
    }
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the clients work on.
pub struct World {
    pub admin: String,
    pub children: Vec<String>,
    pub projects: Vec<String>,
}

/// A small deterministic generator (xorshift64*): the drill needs spread, not secrecy.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; zero is mapped to a fixed non-zero state).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Creates `children` children of the partner (each with a project and 1,500 credits, so
/// that generations soon cross the auto-refill threshold the traffic sets) and a
/// firehose webhook endpoint to `hook_url`, spread over the nodes. Errors on any non-2xx.
pub async fn setup(api: &Api, log: &Log, admin: &str, children: usize, hook_url: &str) -> Result<World, Fail> {
    let must = |what: &str, r: Option<super::api::Reply>| -> Result<super::api::Reply, Fail> {
        match r {
            Some(r) if r.ok() => Ok(r),
            Some(r) => Err(format!("setup: {what} answered {} {}", r.status, r.body)),
            None => Err(format!("setup: {what} got no response")),
        }
    };
    let events = [
        "organization.created",
        "organization.suspended",
        "organization.resumed",
        "credits.allocated",
        "credits.refilled",
        "credits.low",
        "api_key.created",
        "api_key.revoked",
        "job.completed",
        "job.failed",
        "content.generated",
    ];
    let body = json!({ "url": hook_url, "events": events, "scope": "all_children", "description": "drill receiver" });
    let r = must("creating the webhook endpoint", api.send(Req::write(0, Method::POST, "/v1/webhook-endpoints", admin, Some(body))).await)?;
    log.write(0, Write::Endpoint { id: r.str("/endpoint/id") });
    let mut world = World { admin: admin.to_owned(), children: Vec::new(), projects: Vec::new() };
    for i in 0..children {
        let body = json!({ "name": format!("drill child {i}"), "metadata": { "externalId": format!("drill-{i}") } });
        let r = must("creating a child", api.send(Req::write(i, Method::POST, "/v1/organizations", admin, Some(body))).await)?;
        let child = r.str("/id");
        log.write(i, Write::Org { id: child.clone() });
        let body = json!({ "name": format!("drill project {i}"), "timezone": "UTC" });
        let r =
            must("creating a project", api.send(Req::write(i + 1, Method::POST, "/v1/projects", admin, Some(body)).acting(&child)).await)?;
        log.write(i + 1, Write::Project { id: r.str("/id") });
        world.projects.push(r.str("/id"));
        allocate(api, log, i + 2, admin, &child, 1_500).await.ok_or_else(|| format!("setup: the first allocation into {child} failed"))?;
        world.children.push(child);
    }
    Ok(world)
}

/// Allocates `credits` into `child`; logs it and returns the `txn_` id on 201.
async fn allocate(api: &Api, log: &Log, node: usize, admin: &str, child: &str, credits: i64) -> Option<String> {
    let path = format!("/v1/organizations/{child}/credits/allocate");
    let r = api.send(Req::write(node, Method::POST, path, admin, Some(json!({ "credits": credits, "description": "drill" })))).await?;
    if r.status != 201 {
        return None;
    }
    let txn = r.str("/id");
    log.write(node, Write::Allocation { txn: txn.clone(), child: child.to_owned(), credits });
    Some(txn)
}

/// Runs client `c` of `clients` until `deadline`: allocations, reads, generations, credit-config
/// changes and suspend/resume (of the children this client owns), key minting and revocation,
/// and now and then a new child. Each request goes to the next node in turn. At the end it
/// resumes the children it left suspended, so their held deliveries flow.
pub async fn client(api: Api, log: Arc<Log>, world: Arc<World>, c: usize, clients: usize, deadline: Instant) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let owned: Vec<usize> = (0..world.children.len()).filter(|i| i % clients == c).collect();
    let mut suspended = vec![false; world.children.len()];
    let mut keys: Vec<(usize, String, String)> = Vec::new();
    let admin = world.admin.as_str();
    let mut node = c;
    while Instant::now() < deadline {
        node += 1;
        let i = rng.below(world.children.len() as u64) as usize;
        let child = world.children[i].as_str();
        let roll = rng.below(40);
        let own = (!owned.is_empty()).then(|| owned[rng.below(owned.len() as u64) as usize]);
        match (roll, own) {
            (0..=15, _) | (30..=33, None) => {
                let _ = allocate(&api, &log, node, admin, child, 1 + rng.below(10) as i64).await;
            }
            (16..=24, _) => {
                let path = match rng.below(3) {
                    0 => "/v1/whoami".to_owned(),
                    1 => format!("/v1/organizations/{child}"),
                    _ => format!("/v1/organizations/{child}/credits"),
                };
                let _ = api.send(Req::get(node, path, admin)).await;
            }
            (25..=29, _) => {
                let path = format!("/v1/projects/{}/content", world.projects[i]);
                let body = json!({ "format": "slideshow_builder", "variantCount": 1 });
                if let Some(r) = api.send(Req::write(node, Method::POST, path, admin, Some(body)).acting(child)).await
                    && r.ok()
                {
                    log.write(node, Write::Job { id: r.str("/jobId") });
                }
            }
            (30..=32, Some(o)) => {
                let cap = [Value::Null, json!(1_000_000), json!(2_000)][rng.below(3) as usize].clone();
                // Generations (50 each) take out a little more than allocations (1–10) bring in,
                // so balances drift down from 1,500 and cross these thresholds: auto-refills.
                let (threshold, amount) = match rng.below(3) {
                    0 => (Value::Null, Value::Null),
                    k => (json!(600 + 400 * k), json!(300)),
                };
                let body = json!({ "monthlyCreditCap": cap, "refillThreshold": threshold, "refillAmount": amount });
                let owned_child = world.children[o].clone();
                let path = format!("/v1/organizations/{owned_child}/credit-config");
                if let Some(r) = api.send(Req::write(node, Method::PATCH, path, admin, Some(body))).await
                    && r.ok()
                {
                    let get = |f: &str| r.body["config"][f].as_i64();
                    let config = [get("monthlyCreditCap"), get("refillThreshold"), get("refillAmount")];
                    log.write(node, Write::Config { child: owned_child, config });
                }
            }
            (33, Some(o)) => {
                let action = if suspended[o] { "resume" } else { "suspend" };
                if set_status(&api, &log, node, admin, &world.children[o], action).await {
                    suspended[o] = !suspended[o];
                }
            }
            (34..=36, _) => {
                let path = format!("/v1/organizations/{child}/api-keys");
                let body = json!({ "name": "drill", "scopes": ["credits:read"] });
                if let Some(r) = api.send(Req::write(node, Method::POST, path, admin, Some(body))).await
                    && r.status == 201
                {
                    let (id, secret) = (r.str("/apiKey/id"), r.str("/secret"));
                    log.write(node, Write::KeyMinted { id: id.clone() });
                    // A key minted on one node is good on the next one at once.
                    if let Some(w) = api.send(Req::get(node + 1, "/v1/whoami", &secret)).await
                        && w.status != 200
                    {
                        log.violation(format!("key {id} minted on node {} got {} on node {}", node % 3 + 1, w.status, (node + 1) % 3 + 1));
                    }
                    keys.push((i, id, secret));
                }
            }
            (37..=38, _) if !keys.is_empty() => {
                let (k_child, id, secret) = keys.swap_remove(rng.below(keys.len() as u64) as usize);
                let path = format!("/v1/organizations/{}/api-keys/{id}", world.children[k_child]);
                if let Some(r) = api.send(Req::write(node, Method::DELETE, path, admin, None)).await
                    && r.ok()
                {
                    log.write(node, Write::KeyRevoked { id: id.clone() });
                    // A key revoked on one node is refused by the next one within 1 s (another
                    // process's cached authorization is invalidated by NOTIFY; issue 9, item 5).
                    let within = std::time::Duration::from_secs(1);
                    if api.until_refused(node + 1, "/v1/whoami", &secret, Instant::now(), within).await.is_none() {
                        log.violation(format!(
                            "key {id} revoked on node {} still accepted on node {} after 1 s",
                            node % 3 + 1,
                            (node + 1) % 3 + 1
                        ));
                    }
                }
            }
            _ => {
                let body = json!({ "name": format!("drill extra {c}-{node}") });
                if let Some(r) = api.send(Req::write(node, Method::POST, "/v1/organizations", admin, Some(body))).await
                    && r.status == 201
                {
                    log.write(node, Write::Org { id: r.str("/id") });
                }
            }
        }
    }
    for o in owned {
        if suspended[o] && !set_status(&api, &log, node, admin, &world.children[o], "resume").await {
            log.violation(format!("could not resume {} at the end of the traffic", world.children[o]));
        }
    }
}

/// Suspends or resumes `child`; logs it and returns true on 2xx.
async fn set_status(api: &Api, log: &Log, node: usize, admin: &str, child: &str, action: &str) -> bool {
    let path = format!("/v1/organizations/{child}/{action}");
    match api.send(Req::write(node, Method::POST, path, admin, None)).await {
        Some(r) if r.ok() => {
            log.write(node, Write::Status { child: child.to_owned(), status: r.str("/status") });
            true
        }
        _ => false,
    }
}
