//! Projects (CONTRACT §4) and project migration (CONTRACT §2, migrate).

use serde_json::json;

use crate::helpers::TestApp;

async fn project(app: &TestApp, acting: Option<&str>, body: serde_json::Value) -> crate::helpers::Resp {
    let mut call = app.post("/v1/projects").key(&app.admin_key).json(&body);
    if let Some(org) = acting {
        call = call.acting(org);
    }
    call.send().await
}

#[tokio::test]
async fn the_guide_creates_a_project_inside_a_child_with_the_header() {
    let app = TestApp::spawn().await;
    let child = app.create_child("Acme Coffee").await;
    let r = app
        .post("/v1/projects")
        .key(&app.admin_key)
        .acting(&child)
        .idem("p-1")
        .json(&json!({ "name": "Acme Coffee", "timezone": "America/Los_Angeles" }))
        .send()
        .await;
    let b = r.assert_status(201).clone();
    assert!(b["id"].as_str().unwrap().starts_with("prj_"));
    assert_eq!(b["organizationId"], child.as_str());
    assert_eq!(b["status"], "active");
    assert_eq!(b["primaryLanguage"], "en");
    assert_eq!(b["metadata"], json!({}));
    for field in ["customerExternalId", "ownerEmail", "archivedAt"] {
        assert_eq!(b[field], json!(null), "{field}");
    }
    let id = b["id"].as_str().unwrap();
    // Invisible outside the child; visible inside it; counted in its summary.
    app.get(&format!("/v1/projects/{id}")).key(&app.admin_key).send().await.assert_error(404, "NOT_FOUND");
    app.get(&format!("/v1/projects/{id}")).key(&app.admin_key).acting(&child).send().await.assert_status(200);
    let other = app.create_child("Other").await;
    app.get(&format!("/v1/projects/{id}")).key(&app.admin_key).acting(&other).send().await.assert_error(404, "NOT_FOUND");
    let org = app.get(&format!("/v1/organizations/{child}")).key(&app.admin_key).send().await;
    assert_eq!(org.body["summary"]["projectCount"], 1);
}

#[tokio::test]
async fn project_fields_are_validated_and_external_ids_are_unique_per_org() {
    let app = TestApp::spawn().await;
    let r = project(&app, None, json!({ "name": "A" })).await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["field"], "timezone");
    for (bad, field) in [
        (json!({ "name": "A", "timezone": "Mars/Base" }), "timezone"),
        (json!({ "name": "A", "timezone": "UTC", "primaryLanguage": "english!" }), "primaryLanguage"),
        (json!({ "name": "A", "timezone": "UTC", "ownerEmail": "nope" }), "ownerEmail"),
        (json!({ "name": "A", "timezone": "UTC", "metadata": [1] }), "metadata"),
        (json!({ "name": "A", "timezone": "UTC", "metadata": { "x": "y".repeat(9000) } }), "metadata"),
        (json!({ "name": "A", "timezone": "UTC", "id": "prj_nope" }), "id"),
        (json!({ "name": "", "timezone": "UTC" }), "name"),
    ] {
        let r = project(&app, None, bad).await;
        r.assert_error(422, "VALIDATION");
        assert_eq!(r.body["error"]["details"]["field"], field);
    }
    let id = "prj_8f0c3e9a-1111-4222-8333-444455556666";
    let r = project(&app, None, json!({ "id": id, "name": "A", "timezone": "Europe/Paris", "customerExternalId": "acme-prod", "primaryLanguage": "fr-FR", "metadata": { "tier": { "level": 2 } } })).await;
    let b = r.assert_status(201);
    assert_eq!((b["id"].as_str(), b["primaryLanguage"].as_str()), (Some(id), Some("fr-FR")));
    assert_eq!(b["metadata"], json!({ "tier": { "level": 2 } }));
    project(&app, None, json!({ "id": id, "name": "B", "timezone": "UTC" })).await.assert_error(409, "CONFLICT");
    project(&app, None, json!({ "name": "B", "timezone": "UTC", "customerExternalId": "acme-prod" })).await.assert_error(409, "CONFLICT");
    // Another org may use the same external id.
    let child = app.create_child("Child").await;
    project(&app, Some(&child), json!({ "name": "B", "timezone": "UTC", "customerExternalId": "acme-prod" })).await.assert_status(201);
}

#[tokio::test]
async fn projects_list_with_filters_and_search() {
    let app = TestApp::spawn().await;
    for (name, ext) in [("Acme Prod", "acme-prod"), ("Wayne Labs", "wayne"), ("Stark 100%_Industries", "stark")] {
        project(&app, None, json!({ "name": name, "timezone": "UTC", "customerExternalId": ext })).await.assert_status(201);
    }
    let names = |path: String| {
        let app = &app;
        async move {
            let r = app.get(&path).key(&app.admin_key).send().await;
            r.assert_status(200)["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(names("/v1/projects".into()).await, ["Stark 100%_Industries", "Wayne Labs", "Acme Prod"]);
    assert_eq!(names("/v1/projects?search=LABS".into()).await, ["Wayne Labs"]);
    assert_eq!(names("/v1/projects?search=100%25_".into()).await, ["Stark 100%_Industries"]);
    assert_eq!(names("/v1/projects?search=%25".into()).await, ["Stark 100%_Industries"], "a % searches for a percent sign");
    assert_eq!(names("/v1/projects?customerExternalId=wayne".into()).await, ["Wayne Labs"]);
    assert_eq!(names("/v1/projects?status=archived".into()).await, Vec::<String>::new());
    let page = app.get("/v1/projects?limit=2").key(&app.admin_key).send().await;
    let cursor = page.body["nextCursor"].as_str().unwrap().to_owned();
    assert_eq!(names(format!("/v1/projects?limit=2&cursor={cursor}")).await, ["Acme Prod"]);
    app.get("/v1/projects?status=gone").key(&app.admin_key).send().await.assert_error(422, "VALIDATION");
}

#[tokio::test]
async fn patch_refuses_read_only_fields_with_400_and_replaces_metadata_whole() {
    let app = TestApp::spawn().await;
    let r = project(&app, None, json!({ "name": "A", "timezone": "UTC", "metadata": { "a": 1, "b": 2 } })).await;
    let id = r.assert_status(201)["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/projects/{id}");
    for field in ["id", "organizationId", "createdAt"] {
        let r = app.patch(&path).key(&app.admin_key).json(&json!({ field: "x" })).send().await;
        r.assert_error(400, "VALIDATION");
        assert_eq!(r.body["error"]["details"]["field"], field);
    }
    app.patch(&path).key(&app.admin_key).json(&json!({ "colour": "x" })).send().await.assert_error(422, "VALIDATION");
    app.patch(&path).key(&app.admin_key).json(&json!({ "status": "archived" })).send().await.assert_error(422, "VALIDATION");
    app.clock.advance_ms(1000);
    let r = app
        .patch(&path)
        .key(&app.admin_key)
        .json(&json!({ "metadata": { "c": 3 }, "timezone": "Asia/Tokyo", "ownerEmail": "o@acme.example" }))
        .send()
        .await;
    let b = r.assert_status(200);
    assert_eq!(b["metadata"], json!({ "c": 3 }));
    assert_eq!(b["timezone"], "Asia/Tokyo");
    assert_eq!(b["updatedAt"], "2026-06-01T00:00:01.000Z");
    let r = app.patch(&path).key(&app.admin_key).json(&json!({ "ownerEmail": null })).send().await;
    assert_eq!(r.assert_status(200)["ownerEmail"], json!(null));
}

#[tokio::test]
async fn archive_is_soft_repeatable_and_reversible() {
    let app = TestApp::spawn().await;
    let r = project(&app, None, json!({ "name": "A", "timezone": "UTC" })).await;
    let id = r.assert_status(201)["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/projects/{id}");
    let a = app.delete(&path).key(&app.admin_key).send().await;
    assert_eq!(
        a.assert_status(200),
        &json!({ "id": id, "status": "archived", "archivedAt": "2026-06-01T00:00:00.000Z", "canceledScheduledPosts": 0 })
    );
    app.delete(&path).key(&app.admin_key).send().await.assert_status(200);
    assert_eq!(app.get(&path).key(&app.admin_key).send().await.body["status"], "archived");
    let r = app.post(&format!("{path}/content")).key(&app.admin_key).json(&json!({})).send().await;
    r.assert_error(409, "CONFLICT");
    let r = app.patch(&path).key(&app.admin_key).json(&json!({ "status": "active" })).send().await;
    let b = r.assert_status(200);
    assert_eq!((b["status"].as_str(), b["archivedAt"].clone()), (Some("active"), json!(null)));
}

#[tokio::test]
async fn migrate_moves_projects_into_new_children_all_or_nothing() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 10_000).await;
    let mut ids = Vec::new();
    for name in ["acme-1", "acme-2", "wayne"] {
        let r = project(&app, None, json!({ "name": name, "timezone": "UTC" })).await;
        ids.push(r.assert_status(201)["id"].as_str().unwrap().to_owned());
    }
    // A running job on one mapped project rejects the whole call.
    app.post(&format!("/v1/projects/{}/content", ids[2])).key(&app.admin_key).json(&json!({})).send().await.assert_status(202);
    let mapping = json!({ "mapping": { ids[0].clone(): "Acme", ids[1].clone(): "Acme", ids[2].clone(): "Wayne" } });
    let r = app.post("/v1/organizations/migrate").key(&app.admin_key).json(&mapping).send().await;
    r.assert_error(409, "CONFLICT");
    assert_eq!(app.get("/v1/organizations").key(&app.admin_key).send().await.body["items"], json!([]), "nothing was created");
    app.clock.advance_ms(5_000);
    strata_workers::advance_jobs(&app.strata).await;
    let r = app.post("/v1/organizations/migrate").key(&app.admin_key).idem("m").json(&mapping).send().await;
    let b = r.assert_status(201).clone();
    assert_eq!((b["projectsMoved"].as_i64(), b["childrenCreated"].as_i64()), (Some(3), Some(2)));
    let children = b["children"].as_array().unwrap();
    let acme = children.iter().find(|c| c["name"] == "Acme").unwrap();
    let mut moved_ids: Vec<&str> = acme["projectIds"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    moved_ids.sort_unstable();
    let mut want = vec![ids[0].as_str(), ids[1].as_str()];
    want.sort_unstable();
    assert_eq!(moved_ids, want);
    let acme_id = acme["id"].as_str().unwrap();
    app.get(&format!("/v1/projects/{}", ids[0])).key(&app.admin_key).send().await.assert_error(404, "NOT_FOUND");
    let moved = app.get(&format!("/v1/projects/{}", ids[0])).key(&app.admin_key).acting(acme_id).send().await;
    assert_eq!(moved.assert_status(200)["organizationId"], acme_id);
    // Replay-safe.
    let again = app.post("/v1/organizations/migrate").key(&app.admin_key).idem("m").json(&mapping).send().await;
    assert_eq!(again.raw, r.raw);
    assert_eq!(app.get("/v1/organizations").key(&app.admin_key).send().await.body["items"].as_array().unwrap().len(), 2);
    // Another org's project is 404; a child cannot migrate; bad input is 422.
    let (_, other) = app.other_partner("Other").await;
    app.post("/v1/organizations/migrate")
        .key(&other)
        .json(&json!({ "mapping": { ids[0].clone(): "X" } }))
        .send()
        .await
        .assert_error(404, "NOT_FOUND");
    let r = app
        .post("/v1/organizations/migrate")
        .key(&app.admin_key)
        .acting(acme_id)
        .json(&json!({ "mapping": { ids[0].clone(): "X" } }))
        .send()
        .await;
    r.assert_error(422, "VALIDATION");
    app.post("/v1/organizations/migrate").key(&app.admin_key).json(&json!({ "mapping": {} })).send().await.assert_error(422, "VALIDATION");
    app.assert_ledger().await;
}

/// A client-supplied project id is unique per org (issue 12, kind 3): one another org already
/// uses gets the same 201 as an unused one, each org reads, lists, edits and archives its own
/// project, and only a second use in the same org is 409.
#[tokio::test]
async fn a_client_project_id_taken_in_another_org_is_as_free_as_an_unused_one() {
    let app = TestApp::spawn().await;
    let (other_org, other) = app.other_partner("Other CRM").await;
    let child = app.create_child("Acme").await;
    let id = "prj_5b1f0c3e-8a2d-4c6b-9e7f-1a2b3c4d5e6f";
    let body = |name: &str| json!({ "id": id, "name": name, "timezone": "UTC" });
    let theirs = app.post("/v1/projects").key(&other).json(&body("Theirs")).send().await;
    assert_eq!(theirs.assert_status(201)["organizationId"], other_org.as_str());
    for (acting, name) in [(None, "Ours"), (Some(child.as_str()), "Child's")] {
        let r = project(&app, acting, body(name)).await;
        let b = r.assert_status(201);
        assert_eq!((b["id"].as_str(), b["name"].as_str()), (Some(id), Some(name)));
    }
    let again = project(&app, Some(&child), body("Again")).await;
    again.assert_error(409, "CONFLICT");
    assert_eq!(again.body["error"]["details"]["field"], "id");
    let path = format!("/v1/projects/{id}");
    app.patch(&path).key(&app.admin_key).json(&json!({ "name": "Ours, renamed" })).send().await.assert_status(200);
    let archived = app.delete(&path).key(&app.admin_key).acting(&child).send().await;
    assert_eq!(archived.assert_status(200)["status"], "archived");
    let cases = [
        (other.as_str(), None, other_org.as_str(), "Theirs", "active"),
        (app.admin_key.as_str(), None, app.partner_org.as_str(), "Ours, renamed", "active"),
        (app.admin_key.as_str(), Some(child.as_str()), child.as_str(), "Child's", "archived"),
    ];
    for (key, acting, org, name, status) in cases {
        let call = |p: &str| {
            let c = app.get(p).key(key);
            if let Some(a) = acting { c.acting(a) } else { c }
        };
        let one = call(&path).send().await;
        let b = one.assert_status(200);
        assert_eq!((b["organizationId"].as_str(), b["name"].as_str(), b["status"].as_str()), (Some(org), Some(name), Some(status)));
        let list = call("/v1/projects").send().await;
        let items = list.assert_status(200)["items"].as_array().unwrap().clone();
        assert_eq!(items.len(), 1, "{org} lists only its own project");
        assert_eq!((items[0]["id"].as_str(), items[0]["name"].as_str()), (Some(id), Some(name)));
    }
}
