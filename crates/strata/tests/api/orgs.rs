//! Child organizations (CONTRACT §2; seeds 001–004): create, read, edit, lifecycle.

use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn quickstart_call_1_creates_a_child_with_the_seed_shape() {
    let app = TestApp::spawn().await;
    let r = app
        .post("/v1/organizations")
        .key(&app.admin_key)
        .idem("8c4b6f9e-0000-4000-8000-000000000001")
        .json(&json!({ "name": "Acme Coffee", "metadata": { "externalId": "acme-coffee" } }))
        .send()
        .await;
    let b = r.assert_status(201);
    assert!(b["id"].as_str().unwrap().starts_with("org_"));
    assert_eq!(b["parentOrganizationId"], app.partner_org.as_str());
    assert_eq!(b["name"], "Acme Coffee");
    assert_eq!(b["status"], "active");
    assert_eq!(b["metadata"], json!({ "externalId": "acme-coffee" }));
    assert_eq!(b["billingEmail"], json!(null));
    assert_eq!(b["archivedAt"], json!(null));
    assert_eq!(b["createdAt"], "2026-06-01T00:00:00.000Z");
    assert_eq!(b["updatedAt"], "2026-06-01T00:00:00.000Z");
}

#[tokio::test]
async fn quickstart_call_6_reads_the_child_with_its_summary() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme Coffee").await;
    let r = app.get(&format!("/v1/organizations/{org}")).key(&app.admin_key).send().await;
    let b = r.assert_status(200);
    assert_eq!(b["id"], org.as_str());
    assert_eq!(b["name"], "Acme Coffee");
    assert_eq!(
        b["summary"],
        json!({
            "projectCount": 0, "balance": 0, "available": 0, "usedThisPeriod": 0,
            "creditConfig": { "monthlyCreditCap": null, "refillThreshold": null, "refillAmount": null, "autoRefillEnabled": false }
        })
    );
    // The summary appears only on the single-org read.
    let list = app.get("/v1/organizations").key(&app.admin_key).send().await;
    assert!(list.body["items"][0].get("summary").is_none());
}

#[tokio::test]
async fn suspend_and_resume_are_idempotent_by_state_and_archived_is_409() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme Coffee").await;
    let suspend = format!("/v1/organizations/{org}/suspend");
    let resume = format!("/v1/organizations/{org}/resume");
    assert_eq!(app.post(&suspend).key(&app.admin_key).send().await.assert_status(200)["status"], "suspended");
    assert_eq!(app.post(&suspend).key(&app.admin_key).send().await.assert_status(200)["status"], "suspended");
    assert_eq!(app.post(&resume).key(&app.admin_key).send().await.assert_status(200)["status"], "active");
    assert_eq!(app.post(&resume).key(&app.admin_key).send().await.assert_status(200)["status"], "active");
    app.delete(&format!("/v1/organizations/{org}")).key(&app.admin_key).send().await.assert_status(200);
    app.post(&suspend).key(&app.admin_key).send().await.assert_error(409, "CONFLICT");
    app.post(&resume).key(&app.admin_key).send().await.assert_error(409, "CONFLICT");
}

#[tokio::test]
async fn archive_revokes_every_key_and_repeats_its_terminal_state() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme Coffee").await;
    let (_, a) = app.child_key(&org, &["content:read", "content:write"]).await;
    let (_, b) = app.child_key(&org, &["projects:read"]).await;
    app.clock.advance_ms(1000);
    let r = app.delete(&format!("/v1/organizations/{org}")).key(&app.admin_key).send().await;
    let body = r.assert_status(200).clone();
    assert_eq!(
        body,
        json!({ "id": org, "status": "archived", "archivedAt": "2026-06-01T00:00:01.000Z", "reclaimedCredits": 0, "revokedApiKeys": 2 })
    );
    for k in [a, b] {
        app.get("/v1/whoami").key(&k).send().await.assert_error(401, "UNAUTHENTICATED");
    }
    app.clock.advance_ms(1000);
    let again = app.delete(&format!("/v1/organizations/{org}")).key(&app.admin_key).send().await;
    assert_eq!(again.assert_status(200), &body);
    // Reads still work on the archived child; writes are 409.
    let read = app.get(&format!("/v1/organizations/{org}")).key(&app.admin_key).send().await;
    assert_eq!(read.assert_status(200)["status"], "archived");
    app.patch(&format!("/v1/organizations/{org}"))
        .key(&app.admin_key)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .assert_error(409, "CONFLICT");
    let mint =
        app.post(&format!("/v1/organizations/{org}/api-keys")).key(&app.admin_key).json(&json!({"name": "k", "scopes": ["content:read"]}));
    mint.send().await.assert_error(409, "CONFLICT");
    app.post("/v1/api-keys")
        .key(&app.admin_key)
        .acting(&org)
        .json(&json!({"name": "k", "scopes": ["content:read"]}))
        .send()
        .await
        .assert_error(409, "CONFLICT");
}

#[tokio::test]
async fn patch_merges_metadata_key_by_key_and_refuses_status() {
    let app = TestApp::spawn().await;
    let r = app
        .post("/v1/organizations")
        .key(&app.admin_key)
        .json(&json!({ "name": "Acme", "metadata": { "externalId": "cust_1", "plan": "growth" }, "billingEmail": "ops@acme.example" }))
        .send()
        .await;
    let org = r.assert_status(201)["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/organizations/{org}");
    app.clock.advance_ms(5000);
    let r = app
        .patch(&path)
        .key(&app.admin_key)
        .json(&json!({ "name": "Acme Coffee", "metadata": { "plan": "", "tier": "gold" } }))
        .send()
        .await;
    let b = r.assert_status(200);
    assert_eq!(b["name"], "Acme Coffee");
    assert_eq!(b["metadata"], json!({ "externalId": "cust_1", "tier": "gold" }));
    assert_eq!(b["billingEmail"], "ops@acme.example");
    assert_eq!(b["updatedAt"], "2026-06-01T00:00:05.000Z");
    assert_eq!(b["createdAt"], "2026-06-01T00:00:00.000Z");
    let r = app.patch(&path).key(&app.admin_key).json(&json!({ "metadata": null, "billingEmail": null })).send().await;
    let b = r.assert_status(200);
    assert_eq!(b["metadata"], json!({}));
    assert_eq!(b["billingEmail"], json!(null));
    let r = app.patch(&path).key(&app.admin_key).json(&json!({ "status": "archived" })).send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["field"], "status");
    let r = app.patch(&path).key(&app.admin_key).json(&json!({ "metadata": { "a": null } })).send().await;
    r.assert_error(422, "VALIDATION");
    let r = app.patch(&path).key(&app.admin_key).json(&json!({ "billingEmail": "not-an-email" })).send().await;
    assert_eq!(r.body["error"]["details"]["field"], "billingEmail");
    // Nothing of the failed patches was applied.
    let b = app.get(&path).key(&app.admin_key).send().await;
    assert_eq!(b.body["status"], "active");
}

#[tokio::test]
async fn the_hierarchy_is_one_level_deep() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let r = app.post("/v1/organizations").key(&app.admin_key).acting(&org).json(&json!({"name": "Grandchild"})).send().await;
    r.assert_error(422, "VALIDATION");
}

#[tokio::test]
async fn lists_filter_by_status() {
    let app = TestApp::spawn().await;
    let a = app.create_child("a").await;
    let b = app.create_child("b").await;
    app.create_child("c").await;
    app.post(&format!("/v1/organizations/{a}/suspend")).key(&app.admin_key).send().await.assert_status(200);
    app.delete(&format!("/v1/organizations/{b}")).key(&app.admin_key).send().await.assert_status(200);
    let names = |status: &str| {
        let path = format!("/v1/organizations?status={status}");
        let admin = app.admin_key.clone();
        let app = &app;
        async move {
            let r = app.get(&path).key(&admin).send().await;
            r.assert_status(200)["items"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(names("suspended").await, ["a"]);
    assert_eq!(names("archived").await, ["b"]);
    assert_eq!(names("active").await, ["c"]);
    app.get("/v1/organizations?status=deleted").key(&app.admin_key).send().await.assert_error(422, "VALIDATION");
}

#[tokio::test]
async fn a_suspended_child_stays_fully_manageable_by_its_parent() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    app.post(&format!("/v1/organizations/{org}/suspend")).key(&app.admin_key).send().await.assert_status(200);
    app.get(&format!("/v1/organizations/{org}")).key(&app.admin_key).send().await.assert_status(200);
    app.get("/v1/api-keys").key(&app.admin_key).acting(&org).send().await.assert_status(200);
    app.child_key(&org, &["content:read"]).await;
    app.patch(&format!("/v1/organizations/{org}"))
        .key(&app.admin_key)
        .json(&json!({"name": "Acme (held)"}))
        .send()
        .await
        .assert_status(200);
}

#[tokio::test]
async fn concurrent_lifecycle_calls_end_legal_with_exactly_one_archive() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Contended").await;
    app.child_key(&org, &["content:read"]).await;
    app.child_key(&org, &["projects:read"]).await;
    let calls = (0..32).map(|i| {
        let (method, path) = match i % 3 {
            0 => (reqwest::Method::POST, format!("/v1/organizations/{org}/suspend")),
            1 => (reqwest::Method::POST, format!("/v1/organizations/{org}/resume")),
            _ => (reqwest::Method::DELETE, format!("/v1/organizations/{org}")),
        };
        app.call(method, &path).key(&app.admin_key).send()
    });
    let results = futures::future::join_all(calls).await;
    let mut archives = Vec::new();
    for r in &results {
        match r.status {
            200 if r.body.get("revokedApiKeys").is_some() => archives.push(r.body.clone()),
            200 => assert!(["active", "suspended"].contains(&r.body["status"].as_str().unwrap())),
            409 => assert_eq!(r.code(), "CONFLICT"),
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    assert!(!archives.is_empty());
    assert!(archives.iter().all(|a| a == &archives[0]), "every archive answer is the one terminal state");
    assert_eq!(archives[0]["revokedApiKeys"], 2);
    let r = app.get(&format!("/v1/organizations/{org}")).key(&app.admin_key).send().await;
    assert_eq!(r.assert_status(200)["status"], "archived");
    let events = app.get("/v1/events?type=organization.archived").key(&app.admin_key).acting(&org).send().await;
    assert_eq!(events.assert_status(200)["items"].as_array().unwrap().len(), 1, "exactly one archive effect");
    let audit = app.get("/v1/audit-log?eventType=organization.archived").key(&app.admin_key).send().await;
    assert_eq!(audit.assert_status(200)["items"].as_array().unwrap().len(), 1);
}

/// Another tenant's id is simply not found, and reading it locks nothing: while a transaction
/// holds a child's row, another partner's write naming that child answers 404 at once instead of
/// queueing behind the lock (PostgreSQL; SQLite has one writer, so there is no row lock to test).
#[tokio::test]
async fn another_tenants_id_is_not_found_without_waiting_on_its_lock() {
    let app = TestApp::spawn().await;
    if app.strata.store.backend() != "postgres" {
        return;
    }
    let child = app.create_child("Locked Co").await;
    let (_, other_admin) = app.other_partner("Q").await;
    let mut holder = app.strata.store.write().await.unwrap();
    let id = child.parse().unwrap();
    holder.org(strata_core::store::Owner::System, id).await.unwrap().expect("the child, now locked");
    let patch = app.patch(&format!("/v1/organizations/{child}")).key(&other_admin).json(&serde_json::json!({ "name": "mine" })).send();
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), patch).await.expect("another tenant's write must not wait on the row");
    r.assert_error(404, "NOT_FOUND");
    drop(holder);
}

/// Returns once some PostgreSQL backend of this test's database waits on a row lock (a condition
/// polled a bounded number of times, not time waited for).
async fn until_a_write_waits_on_a_lock(app: &TestApp) {
    use sqlx::{Connection, Row};
    let strata::StoreBackend::Postgres { url } = &app.backend else { unreachable!() };
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    for _ in 0..20_000 {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("no write waited on the acting org's row");
}

/// A write racing a change of its acting child's status re-checks that status inside its own
/// transaction (CONTRACT §2): through the header, a write racing an archive is 409 and never
/// lands in the archived org; with the child's own key, a write racing a suspension is 503.
#[tokio::test]
async fn a_write_racing_a_change_of_its_acting_child_sees_the_change() {
    use strata_core::org::OrgStatus;
    use strata_core::store::Owner;
    let app = TestApp::spawn().await;
    if app.strata.store.backend() != "postgres" {
        return; // SQLite's single writer serializes the two; there is no window to race in.
    }
    let (archived, suspended) = (app.create_child("Going Away").await, app.create_child("Paused").await);
    let (_, child_secret) = app.child_key(&suspended, &["projects:write"]).await;
    for (org, status, key, acting, expect) in [
        (&archived, OrgStatus::Archived, app.admin_key.clone(), true, (409, "CONFLICT")),
        (&suspended, OrgStatus::Suspended, child_secret, false, (503, "KILL_SWITCH")),
    ] {
        // The status change is written but not committed while the request authenticates.
        let mut holder = app.strata.store.write().await.unwrap();
        let mut o = holder.org(Owner::System, org.parse().unwrap()).await.unwrap().unwrap();
        o.status = status;
        holder.update_org(&o).await.unwrap();
        let mut call = app.post("/v1/projects").key(&key).json(&json!({ "name": "Racer", "timezone": "UTC" }));
        if acting {
            call = call.acting(org);
        }
        let release = async {
            until_a_write_waits_on_a_lock(&app).await;
            holder.commit().await.unwrap();
        };
        let (r, ()) = tokio::join!(call.send(), release);
        r.assert_error(expect.0, expect.1);
        let listed = app.get("/v1/projects").key(&app.admin_key).acting(org).send().await;
        assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(0), "nothing landed in the {status:?} org");
    }
}

/// A bad metadata value names its key (`details.field: "metadata.<key>"`), on every route whose
/// metadata is string-valued.
#[tokio::test]
async fn a_bad_metadata_value_names_its_key() {
    let app = TestApp::spawn().await;
    let child = app.create_child("Acme").await;
    let bad = json!({ "externalId": null });
    let check = |r: crate::helpers::Resp, key: &str| {
        r.assert_error(422, "VALIDATION");
        assert_eq!(r.body["error"]["details"]["field"], format!("metadata.{key}"), "{}", r.body);
    };
    check(app.post("/v1/organizations").key(&app.admin_key).json(&json!({ "name": "X", "metadata": bad })).send().await, "externalId");
    check(
        app.patch(&format!("/v1/organizations/{child}")).key(&app.admin_key).json(&json!({ "metadata": bad })).send().await,
        "externalId",
    );
    check(
        app.post(&format!("/v1/organizations/{child}/credits/allocate"))
            .key(&app.admin_key)
            .idem("meta-1")
            .json(&json!({ "credits": 1, "metadata": { "po": 7 } }))
            .send()
            .await,
        "po",
    );
}

#[tokio::test]
async fn nodes_starting_together_on_an_empty_database_provision_one_first_partner() {
    let dir = tempfile::tempdir().unwrap();
    let backend = match std::env::var("STRATA_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => strata::StoreBackend::Postgres { url: crate::helpers::fresh_pg_database(&url).await },
        _ => strata::StoreBackend::Sqlite { dir: dir.path().to_owned() },
    };
    let opts = strata::OpenOptions {
        backend,
        secret_hex: Some(strata_core::cursor::ServerSecret::generate().to_hex()),
        previous_secret_hex: None,
        core: strata_core::service::CoreConfig::default(),
        db: Default::default(),
    };
    let clock = std::sync::Arc::new(strata_core::clock::SystemClock);
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(strata::open(&opts, clock.clone()).await.unwrap());
    }
    let started = futures::future::join_all(nodes.iter().map(|n| n.bootstrap("First"))).await;
    let provisioned = started.into_iter().map(Result::unwrap).filter(Option::is_some).count();
    assert_eq!(provisioned, 1, "exactly one node provisions the first partner");
    assert_eq!(nodes[0].list_partners().await.unwrap().len(), 1);
}
