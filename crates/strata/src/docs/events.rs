//! `docs/events.md`: the event catalog, from the OpenAPI document's `webhooks`: the delivery
//! envelope and how it is sent, then each event type with when it is sent, its `data` fields and
//! a payload example.

use serde_json::Value;

use super::spec::{Spec, anchor, cell, field_table, json_block, paragraphs};

/// One catalog entry as the document's `webhooks` holds it.
struct Entry<'a> {
    name: &'a str,
    /// When it is sent, then how every event is delivered (two paragraphs).
    description: &'a str,
    envelope: &'a Value,
}

fn entries(spec: &Spec) -> Vec<Entry<'_>> {
    spec.root
        .get("webhooks")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, item)| Entry {
            name,
            description: item.pointer("/post/description").and_then(Value::as_str).unwrap_or_default(),
            envelope: item.pointer("/post/requestBody/content/application~1json/schema").unwrap_or(&Value::Null),
        })
        .collect()
}

pub(super) fn render(spec: &Spec, out: &mut String) {
    let entries = entries(spec);
    out.push_str("# Event catalog\n\n");
    out.push_str(
        "strata records an event in the same transaction as the change it reports, and delivers it to every webhook \
         endpoint subscribed to its type (at least once, in no promised order). The same events are readable without a \
         webhook at `GET /v1/events` and `GET /v1/events/{eventId}`. How to verify a delivery's signature, with tested \
         Python and Node examples: [webhooks.md](webhooks.md).\n\n",
    );

    out.push_str("## The delivery\n\n");
    if let Some(first) = entries.first() {
        let (_, how) = first.description.split_once("\n\n").unwrap_or(("", first.description));
        out.push_str(&paragraphs(how));
        out.push_str("\n\nEvery event has the same envelope; only `type` and `data` differ:\n\n");
        let envelope: Vec<_> = spec.fields(first.envelope).into_iter().filter(|f| f.name != "type" && f.name != "data").collect();
        let mut rows = field_table(&envelope);
        rows.push_str("| `type` | string | yes | The event type: one of the catalog below. |\n");
        rows.push_str(
            "| `data` | object | yes | The event's own fields, below; always with `organizationId`, the org the event is about. |\n",
        );
        out.push_str(&rows);
        out.push('\n');
    }

    out.push_str("## Catalog\n\n| event | when it is sent |\n| --- | --- |\n");
    for e in &entries {
        let (when, _) = e.description.split_once("\n\n").unwrap_or((e.description, ""));
        out.push_str(&format!("| [`{}`](#{}) | {} |\n", e.name, anchor(e.name), cell(when)));
    }
    out.push('\n');

    for e in &entries {
        let (when, _) = e.description.split_once("\n\n").unwrap_or((e.description, ""));
        out.push_str(&format!("### {}\n\n{}\n\n", e.name, paragraphs(when)));
        let data = e.envelope.pointer("/properties/data").unwrap_or(&Value::Null);
        let about = spec.description_of(data);
        if !about.is_empty() {
            out.push_str(&format!("`data`: {}\n\n", paragraphs(&about)));
        }
        out.push_str(&field_table(&spec.fields(data)));
        let mut example = spec.example(e.envelope);
        if let Value::Object(o) = &mut example {
            // Only a replayed delivery carries `replayOf`.
            o.remove("replayOf");
        }
        out.push_str("\nExample payload:\n\n");
        out.push_str(&json_block(&example));
        out.push('\n');
    }
}
