//! `docs/api.md`: the API guide. The conventions are the document's own introduction; then the
//! authentication scheme, the error codes, the shared headers and parameters, and every route
//! grouped by tag with its scope, parameters, body, answers and examples.

use serde_json::Value;

use super::spec::{Spec, anchor, cell, field_table, json_block, paragraphs};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

pub(super) fn render(spec: &Spec, out: &mut String) {
    let root = &spec.root;
    let text = |p: &str| root.pointer(p).and_then(Value::as_str).unwrap_or_default();
    out.push_str("# API guide\n\n");
    out.push_str(&paragraphs(text("/info/description")));
    out.push_str(
        "\n\nThe same document is served as OpenAPI 3.1 at `GET /openapi.json` (committed as `openapi.json`) and rendered \
         at `GET /docs`. Webhook payloads are described in [the event catalog](events.md), and how to verify them in \
         [webhooks.md](webhooks.md).\n\n",
    );

    out.push_str("## Authentication\n\n");
    out.push_str(&paragraphs(text("/components/securitySchemes/bearer/description")));
    out.push_str(
        "\n\nEach route below names the scope its key needs. `org:admin` holds every data scope of its own org; a route with \
         no scope listed needs only a valid key.\n\n",
    );

    out.push_str("## Errors\n\n");
    let envelope = root.pointer("/components/schemas/ErrorEnvelope").unwrap_or(&Value::Null);
    out.push_str(&paragraphs(envelope.get("description").and_then(Value::as_str).unwrap_or_default()));
    out.push_str("\n\n");
    out.push_str(&json_block(&spec.example(envelope)));
    out.push('\n');
    out.push_str(&field_table(&spec.fields(root.pointer("/components/schemas/ErrorBody").unwrap_or(&Value::Null))));
    out.push('\n');
    out.push_str(&paragraphs(text("/components/schemas/ErrorCode/description")));
    out.push_str("\n\n");

    out.push_str("## Headers\n\nResponse headers, named on the routes that send them.\n\n| header | description |\n| --- | --- |\n");
    for (name, h) in root.pointer("/components/headers").and_then(Value::as_object).into_iter().flatten() {
        out.push_str(&format!("| `{name}` | {} |\n", cell(h.get("description").and_then(Value::as_str).unwrap_or_default())));
    }
    out.push_str("\nRequest headers many routes share (each route lists the ones it takes):\n\n| header | description |\n| --- | --- |\n");
    for (_, p) in root.pointer("/components/parameters").and_then(Value::as_object).into_iter().flatten() {
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        out.push_str(&format!("| `{name}` | {} |\n", cell(p.get("description").and_then(Value::as_str).unwrap_or_default())));
    }
    out.push('\n');

    routes(spec, out);
}

/// The operations of the document, in its order, as (method, path, operation).
fn operations(spec: &Spec) -> Vec<(&'static str, &str, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in spec.root.get("paths").and_then(Value::as_object).into_iter().flatten() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                ops.push((m, path.as_str(), op));
            }
        }
    }
    ops
}

fn tag_of(op: &Value) -> &str {
    op.pointer("/tags/0").and_then(Value::as_str).unwrap_or("Other")
}

fn routes(spec: &Spec, out: &mut String) {
    let ops = operations(spec);
    let tags: Vec<(&str, &str)> = spec
        .root
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            (t.get("name").and_then(Value::as_str).unwrap_or_default(), t.get("description").and_then(Value::as_str).unwrap_or_default())
        })
        .collect();

    out.push_str("## Routes\n\n");
    for (tag, _) in &tags {
        let listed: Vec<_> = ops.iter().filter(|(_, _, op)| tag_of(op) == *tag).collect();
        if listed.is_empty() {
            continue;
        }
        out.push_str(&format!("- [{tag}](#{})\n", anchor(tag)));
        for (m, path, op) in listed {
            let heading = route_heading(m, path);
            let summary = op.get("summary").and_then(Value::as_str).unwrap_or_default();
            out.push_str(&format!("  - [{heading}](#{}): {}\n", anchor(&heading), cell(summary)));
        }
    }
    out.push('\n');

    for (tag, description) in &tags {
        let listed: Vec<_> = ops.iter().filter(|(_, _, op)| tag_of(op) == *tag).collect();
        if listed.is_empty() {
            continue;
        }
        out.push_str(&format!("### {tag}\n\n{}\n\n", paragraphs(description)));
        for (m, path, op) in listed {
            route(spec, m, path, op, out);
        }
    }
}

fn route_heading(method: &str, path: &str) -> String {
    format!("{} {path}", method.to_uppercase())
}

fn route(spec: &Spec, method: &str, path: &str, op: &Value, out: &mut String) {
    let text = |p: &str| op.pointer(p).and_then(Value::as_str).unwrap_or_default();
    out.push_str(&format!("#### {}\n\n", route_heading(method, path)));
    out.push_str(&format!("**{}**", cell(text("/summary"))));
    let description = text("/description");
    if !description.is_empty() {
        out.push_str(&format!(" {}", paragraphs(description)));
    }
    out.push_str("\n\n");
    let access = access(op);
    if !description.contains(&access) {
        out.push_str(&format!("{access}\n\n"));
    }

    let params: Vec<&Value> = op.get("parameters").and_then(Value::as_array).into_iter().flatten().collect();
    if !params.is_empty() {
        out.push_str("| parameter | in | required | type | description |\n| --- | --- | --- | --- | --- |\n");
        for declared in params {
            let p = spec.resolve(declared);
            let schema = p.get("schema").unwrap_or(&Value::Null);
            let repeats =
                p.get("explode").and_then(Value::as_bool) == Some(true) && schema.get("type").and_then(Value::as_str) == Some("array");
            let mut ty = spec.type_label(schema);
            if repeats {
                ty.push_str("; repeat the parameter for any of several");
            }
            // A header every route shares is described once, under Headers.
            let mut description = match declared.get("$ref") {
                Some(_) => "See [Headers](#headers).".to_owned(),
                None => p.get("description").and_then(Value::as_str).unwrap_or_default().to_owned(),
            };
            let bounds: Vec<String> = [("default", "default"), ("minimum", "at least"), ("maximum", "at most")]
                .into_iter()
                .filter_map(|(key, what)| schema.get(key).map(|v| format!("{what} {v}")))
                .collect();
            if !bounds.is_empty() {
                description.push_str(&format!(" ({})", bounds.join(", ")));
            }
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                p.get("name").and_then(Value::as_str).unwrap_or_default(),
                p.get("in").and_then(Value::as_str).unwrap_or_default(),
                if p.get("required").and_then(Value::as_bool) == Some(true) { "yes" } else { "no" },
                cell(&ty),
                cell(description.trim()),
            ));
        }
        out.push('\n');
    }

    if let Some(body) = op.get("requestBody").map(|b| spec.resolve(b)) {
        for (content_type, content) in body.get("content").and_then(Value::as_object).into_iter().flatten() {
            let schema = content.get("schema").unwrap_or(&Value::Null);
            out.push_str(&format!("Request body (`{content_type}`, {}):\n\n", spec.type_label(schema)));
            out.push_str(&field_table(&spec.fields(schema)));
            if let Some(example) = content.get("example") {
                out.push_str("\nExample request:\n\n");
                out.push_str(&json_block(example));
            }
            out.push('\n');
        }
    }

    let mut shared = Vec::new();
    let mut own = String::new();
    let mut examples = String::new();
    for (status, response) in op.pointer("/responses").and_then(Value::as_object).into_iter().flatten() {
        if response.get("$ref").is_some() {
            shared.push(status.as_str());
            continue;
        }
        let description = response.get("description").and_then(Value::as_str).unwrap_or_default();
        let mut body = String::new();
        for (content_type, content) in response.get("content").and_then(Value::as_object).into_iter().flatten() {
            let schema = content.get("schema").unwrap_or(&Value::Null);
            body = if content_type == "application/json" { spec.type_label(schema) } else { format!("`{content_type}`") };
            if let Some(example) = content.get("example") {
                if content_type == "application/json" {
                    examples.push_str(&format!("\nExample response ({status}):\n\n{}", json_block(example)));
                } else if let Some(t) = example.as_str() {
                    examples.push_str(&format!("\nExample response ({status}, `{content_type}`):\n\n```\n{}\n```\n", t.trim_end()));
                }
            }
        }
        own.push_str(&format!("| {status} | {} | {} |\n", cell(&body), cell(description)));
    }
    if !own.is_empty() {
        out.push_str("| status | body | description |\n| --- | --- | --- |\n");
        out.push_str(&own);
    }
    if !shared.is_empty() {
        out.push_str(&format!("\nAlso answers {} (see [Errors](#errors)).\n", shared.join(", ")));
    }
    out.push_str(&examples);
    out.push('\n');
}

/// Who may call the operation: no key, any valid key, or a key with the listed scopes.
fn access(op: &Value) -> String {
    match op.get("security").and_then(Value::as_array) {
        None => "Needs a valid key.".into(),
        Some(list) if list.iter().any(|r| r.as_object().is_some_and(|o| o.is_empty())) => "No key needed.".into(),
        Some(list) => {
            let scopes: Vec<String> = list
                .iter()
                .filter_map(|r| r.get(strata_http::openapi::BEARER).and_then(Value::as_array))
                .flatten()
                .filter_map(Value::as_str)
                .map(|s| format!("`{s}`"))
                .collect();
            if scopes.is_empty() { "Needs a valid key.".into() } else { format!("Scope: {}.", scopes.join(" or ")) }
        }
    }
}
