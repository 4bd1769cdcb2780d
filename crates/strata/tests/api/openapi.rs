//! The OpenAPI document (`GET /openapi.json`): served without a key, equal to the committed
//! `openapi.json`, listing exactly the router's routes, and describing each event's `data` as the
//! server really sends it.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};
use strata_core::clock::{HOUR_MS, SECOND_MS};
use strata_core::event::EventType;

use crate::helpers::TestApp;

/// The one command that rewrites the committed copy.
const REGENERATE: &str = "cargo run -q -p strata -- openapi > openapi.json";

fn committed() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path} ({e}); make it with `{REGENERATE}`"))
}

async fn served(app: &TestApp) -> Value {
    let r = app.get("/openapi.json").send().await;
    r.assert_status(200).clone()
}

#[tokio::test]
async fn the_served_document_is_the_committed_openapi_json() {
    let app = TestApp::spawn().await;
    let r = app.client.get(format!("{}/openapi.json", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 200, "served without a key");
    assert_eq!(r.headers()["content-type"], "application/json");
    let text = r.text().await.unwrap();
    // Compare line by line first, so a failure names the first line that differs.
    if let Some((n, (got, want))) = text.lines().zip(committed().lines()).enumerate().find(|(_, (a, b))| a != b) {
        panic!("openapi.json is stale: line {} is {want:?} there but {got:?} served. Regenerate it: `{REGENERATE}`", n + 1);
    }
    assert!(text == committed(), "openapi.json is stale (its length differs from the served document). Regenerate it: `{REGENERATE}`");
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

const METHODS: [&str; 5] = ["get", "post", "patch", "delete", "put"];

/// A well-formed id for each path parameter, so a request reaches its handler.
fn fill(template: &str) -> String {
    let uuid = "0f0e0d0c-0b0a-4909-8807-060504030201";
    let ulid = "01J0Z5Q6M8W3D2V7K9X4T1B6C5";
    let mut out = template.to_owned();
    for (param, value) in [
        ("{orgId}", format!("org_{uuid}")),
        ("{keyId}", format!("key_{uuid}")),
        ("{projectId}", format!("prj_{uuid}")),
        ("{containerId}", format!("cnt_{ulid}")),
        ("{postId}", format!("post_{ulid}")),
        ("{jobId}", format!("job_{ulid}")),
        ("{endpointId}", format!("whe_{ulid}")),
        ("{deliveryId}", format!("dlv_{ulid}")),
        ("{eventId}", format!("evt_{ulid}")),
        ("{file}", "elements.js".to_owned()),
    ] {
        out = out.replace(param, &value);
    }
    assert!(!out.contains('{'), "a path parameter without a sample value: {template}");
    out
}

#[tokio::test]
async fn every_documented_route_is_served_and_every_other_method_on_its_path_is_405() {
    let app = TestApp::spawn().await;
    let doc = served(&app).await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 40, "{} paths", paths.len());
    let mut operations = 0;
    for (template, item) in paths {
        let path = fill(template);
        for method in METHODS {
            // Without a key: a documented authenticated route answers 401 from its handler's
            // extractor, an unauthenticated one answers itself; the fallback (404) or a 405 means
            // the router and the document disagree.
            let r = app.call(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(), &path).send().await;
            if item.get(method).is_some() {
                operations += 1;
                assert!(
                    r.status != 405 && !(r.status == 404 && r.body["error"]["message"] == "route not found"),
                    "{method} {template} is documented but the router does not serve it: {} {}",
                    r.status,
                    r.body
                );
                let secured = item[method].get("security").is_none_or(|s| s != &json!([{}]));
                if secured {
                    r.assert_error(401, "UNAUTHENTICATED");
                }
            } else {
                assert_eq!(r.status, 405, "{method} {template} is served but not documented: {}", r.body);
            }
        }
    }
    assert!(operations >= 50, "{operations} operations");
}

#[tokio::test]
async fn an_undocumented_path_is_the_routers_fallback() {
    let app = TestApp::spawn().await;
    let r = app.get("/v1/no-such-route").key(&app.admin_key).send().await;
    r.assert_error(404, "NOT_FOUND");
    // The message the route walk above relies on to tell the fallback from a handler's 404.
    assert_eq!(r.body["error"]["message"], "route not found");
}

/// Resolves `$ref`s to component schemas.
fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
        schema = &doc["components"]["schemas"][name];
        assert!(!schema.is_null(), "dangling $ref {r}");
    }
    schema
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `value` against `schema`: JSON types, every field named (none undeclared, none
/// required missing), recursively. Returns what does not conform, by JSON path.
fn mismatches(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = resolve(doc, schema);
    if let Some(branches) = schema.get("oneOf").or_else(|| schema.get("anyOf")).and_then(Value::as_array) {
        let fits = branches.iter().any(|b| mismatches(doc, b, value, at).is_empty());
        return if fits { vec![] } else { vec![format!("{at}: {value} fits none of {}", Value::Array(branches.clone()))] };
    }
    let mut out = Vec::new();
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        // Each part checks its own fields; an object's extra fields are judged against the union.
        let mut merged = json!({ "type": "object", "properties": {}, "required": [] });
        for p in parts {
            let p = resolve(doc, p);
            if let Some(props) = p.get("properties").and_then(Value::as_object) {
                merged["properties"].as_object_mut().unwrap().extend(props.clone());
            }
            if let Some(req) = p.get("required").and_then(Value::as_array) {
                merged["required"].as_array_mut().unwrap().extend(req.clone());
            }
        }
        return mismatches(doc, &merged, value, at);
    }
    let actual = json_type(value);
    let allowed: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let fits = allowed.is_empty() || allowed.contains(&actual) || (actual == "integer" && allowed.contains(&"number"));
    if !fits {
        out.push(format!("{at}: a {actual} ({value}) where the schema says {allowed:?}"));
        return out;
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(value)
    {
        out.push(format!("{at}: {value} is not one of {values:?}"));
    }
    match value {
        Value::Object(fields) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let open = schema.get("additionalProperties").is_some_and(|a| a != &json!(false));
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for r in required.iter().filter_map(Value::as_str) {
                    if !fields.contains_key(r) {
                        out.push(format!("{at}.{r}: required by the schema but not sent"));
                    }
                }
            }
            for (k, v) in fields {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => out.extend(mismatches(doc, s, v, &format!("{at}.{k}"))),
                    None if open => {
                        if let Some(s) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                            out.extend(mismatches(doc, s, v, &format!("{at}.{k}")));
                        }
                    }
                    None if props.is_some() => out.push(format!("{at}.{k}: sent but not in the schema")),
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    out.extend(mismatches(doc, s, v, &format!("{at}[{i}]")));
                }
            }
        }
        _ => {}
    }
    out
}

/// Drives the API through every event the server emits; returns the events of the partner's
/// and the child's logs.
async fn every_event(app: &TestApp) -> Vec<Value> {
    let admin = &app.admin_key;
    app.grant(&app.partner_org, 100_000).await;
    let child = app.create_child("Acme Coffee").await;
    app.allocate(&child, 1000).await.assert_status(201);
    // A refill threshold the next generation crosses: credits.refilled and credits.low.
    app.patch(&format!("/v1/organizations/{child}/credit-config"))
        .key(admin)
        .json(&json!({ "refillThreshold": 900, "refillAmount": 500 }))
        .send()
        .await
        .assert_status(200);
    let (key_id, _) = app.child_key(&child, &["content:read"]).await;
    let rotated = app.post(&format!("/v1/organizations/{child}/api-keys/{key_id}/rotate")).key(admin).send().await;
    let new_key = rotated.assert_status(201)["apiKey"]["id"].as_str().unwrap().to_owned();
    app.delete(&format!("/v1/organizations/{child}/api-keys/{new_key}")).key(admin).send().await.assert_status(200);
    // The caller's own key, rotated in place: api_key.rotated without previousKey.
    let own = app.post("/v1/api-keys").key(admin).json(&json!({ "name": "ops", "scopes": ["projects:read"] })).send().await;
    let own_id = own.assert_status(201)["apiKey"]["id"].as_str().unwrap().to_owned();
    app.post(&format!("/v1/api-keys/{own_id}/rotate")).key(admin).send().await.assert_status(200);

    let project = app.post("/v1/projects").key(admin).acting(&child).json(&json!({ "name": "Acme", "timezone": "UTC" })).send().await;
    let project = project.assert_status(201)["id"].as_str().unwrap().to_owned();
    let content = format!("/v1/projects/{project}/content");
    let generate = |body: Value| app.post(&content).key(admin).acting(&child).json(&body).send();
    let done = generate(json!({ "format": "slideshow_remix" })).await;
    let container = done.assert_status(202)["containerIds"][0].as_str().unwrap().to_owned();
    generate(json!({ "format": "slideshow_remix", "brief": { "topic": "[fail] on purpose" } })).await.assert_status(202);
    let canceled = generate(json!({ "format": "slideshow_remix" })).await;
    let canceled = canceled.assert_status(202)["jobId"].as_str().unwrap().to_owned();
    app.post(&format!("/v1/jobs/{canceled}/cancel")).key(admin).acting(&child).send().await.assert_status(200);
    app.clock.advance_ms(5 * SECOND_MS);
    strata_workers::advance_jobs(&app.strata).await;

    let posts = format!("/v1/projects/{project}/scheduled-posts");
    let post = |when: &str| json!({ "containerId": container, "scheduledFor": when, "platform": "tiktok" });
    app.post(&posts).key(admin).acting(&child).json(&post("2026-06-01T02:00:00Z")).send().await.assert_status(201);
    let later = app.post(&posts).key(admin).acting(&child).json(&post("2026-06-01T03:00:00Z")).send().await;
    let later = later.assert_status(201)["id"].as_str().unwrap().to_owned();
    app.delete(&format!("{posts}/{later}")).key(admin).acting(&child).send().await.assert_status(200);
    app.clock.advance_ms(2 * HOUR_MS);
    strata_workers::publish_due_posts(&app.strata).await;

    let endpoint = app
        .post("/v1/webhook-endpoints")
        .key(admin)
        .json(&json!({ "url": "https://crm.example.com/hooks", "events": ["job.completed"] }))
        .send()
        .await;
    let endpoint = endpoint.assert_status(201)["endpoint"]["id"].as_str().unwrap().to_owned();
    let ping = app.post(&format!("/v1/webhook-endpoints/{endpoint}/test")).key(admin).json(&json!({ "payload": { "hello": 1 } }));
    ping.send().await.assert_status(200);

    app.post(&format!("/v1/organizations/{child}/suspend")).key(admin).send().await.assert_status(200);
    app.post(&format!("/v1/organizations/{child}/resume")).key(admin).send().await.assert_status(200);
    app.delete(&format!("/v1/organizations/{child}")).key(admin).send().await.assert_status(200);

    let mut events = Vec::new();
    for acting in [None, Some(child.as_str())] {
        let mut call = app.get("/v1/events?limit=100").key(admin);
        if let Some(c) = acting {
            call = call.acting(c);
        }
        let page = call.send().await;
        events.extend(page.assert_status(200)["items"].as_array().unwrap().iter().cloned());
    }
    events
}

#[tokio::test]
async fn every_events_data_matches_its_webhook_schema_field_by_field() {
    let app = TestApp::spawn().await;
    let doc = served(&app).await;
    let events = every_event(&app).await;
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    for e in &events {
        let ty = e["type"].as_str().unwrap();
        let hook = &doc["webhooks"][ty]["post"]["requestBody"]["content"]["application/json"]["schema"];
        assert!(hook.is_object(), "no webhook entry for {ty}");
        seen.insert(ty.to_owned());
        // The delivery envelope as a webhook posts it, built from the event log's view.
        let delivered = json!({ "id": e["id"], "type": e["type"], "createdAt": e["createdAt"], "data": e["data"] });
        problems.extend(mismatches(&doc, hook, &delivered, ty));
    }
    assert!(problems.is_empty(), "events that do not match the document:\n{}", problems.join("\n"));
    // `post.failed` is in the catalog, but nothing in strata fails a post yet.
    let expected: BTreeSet<String> =
        EventType::ALL.iter().filter(|t| **t != EventType::PostFailed).map(|t| t.as_str().to_owned()).collect();
    assert_eq!(seen, expected, "every event type the server emits was produced and checked");
    let documented: BTreeSet<String> = doc["webhooks"].as_object().unwrap().keys().cloned().collect();
    let catalog: BTreeSet<String> = EventType::ALL.iter().map(|t| t.as_str().to_owned()).collect();
    assert_eq!(documented, catalog, "one webhook entry per catalog event");
}

#[test]
fn the_schema_check_catches_a_renamed_or_retyped_field() {
    let doc = json!({ "components": { "schemas": {} } });
    let schema = json!({ "type": "object", "required": ["jobId"], "properties": { "jobId": { "type": "string" } } });
    assert!(mismatches(&doc, &schema, &json!({ "jobId": "job_1" }), "e").is_empty());
    assert_eq!(mismatches(&doc, &schema, &json!({ "job_id": "job_1" }), "e").len(), 2, "renamed: missing and undeclared");
    assert_eq!(mismatches(&doc, &schema, &json!({ "jobId": 7 }), "e").len(), 1, "retyped");
}

#[tokio::test]
async fn a_malformed_path_id_is_422_naming_its_parameter_on_every_route() {
    let app = TestApp::spawn().await;
    let doc = served(&app).await;
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        let params: Vec<&str> = template.split('{').skip(1).filter_map(|p| p.split('}').next()).collect();
        for param in params {
            let path = fill(&template.replace(&format!("{{{param}}}"), "not-an-id"));
            for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
                let r = app.call(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(), &path).key(&app.admin_key).send().await;
                r.assert_error(422, "VALIDATION");
                assert_eq!(r.body["error"]["details"]["field"], *param, "{method} {template}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "{checked} checks");
}
