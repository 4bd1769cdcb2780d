//! Reading the OpenAPI document as JSON for the Markdown pages: following `$ref`s, naming a
//! schema's type in a few words, listing an object's fields, and building a payload example
//! from a schema when the document gives none.

use serde_json::{Map, Value, json};

/// The whole OpenAPI document, as JSON.
pub(super) struct Spec {
    pub root: Value,
}

/// One field of an object schema, as a table row shows it.
pub(super) struct Field {
    pub name: String,
    pub ty: String,
    pub required: bool,
    pub description: String,
}

impl Spec {
    pub fn load() -> Self {
        let root = serde_json::from_str(strata_http::openapi::json()).unwrap_or_else(|e| panic!("the OpenAPI document is JSON: {e}"));
        Self { root }
    }

    /// What `v` names when it is a `$ref` (followed to the end), else `v` itself.
    pub fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            match r.strip_prefix('#').and_then(|p| self.root.pointer(p)) {
                Some(target) => v = target,
                None => return &Value::Null,
            }
        }
        v
    }

    /// A schema's type in a few words: `string`, `integer or null`, `array of OrgView`,
    /// `` `active`, `archived` `` for a short enum.
    pub fn type_label(&self, s: &Value) -> String {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let target = self.resolve(s);
            let name = r.rsplit('/').next().unwrap_or(r);
            // A long enum (error codes, event types) is better named than spelled out.
            let long_enum = target.get("enum").and_then(Value::as_array).is_some_and(|v| v.len() > 8);
            return if is_object(target) || long_enum { name.to_owned() } else { self.type_label(target) };
        }
        if let Some(variants) = s.get("oneOf").or_else(|| s.get("anyOf")).and_then(Value::as_array) {
            return variants.iter().map(|v| self.type_label(v)).collect::<Vec<_>>().join(" or ");
        }
        if let Some(parts) = s.get("allOf").and_then(Value::as_array)
            && let Some(first) = parts.first()
        {
            return self.type_label(first);
        }
        if let Some(values) = s.get("enum").and_then(Value::as_array) {
            return values
                .iter()
                .map(|v| format!("`{}`", v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect::<Vec<_>>()
                .join(", ");
        }
        match s.get("type") {
            Some(Value::Array(types)) => types
                .iter()
                .map(|t| self.type_label(&json!({"type": t, "format": s.get("format"), "items": s.get("items")})))
                .collect::<Vec<_>>()
                .join(" or "),
            Some(Value::String(t)) => match t.as_str() {
                "array" => match s.get("items") {
                    Some(items) if !items.is_null() => format!("array of {}", self.type_label(items)),
                    _ => "array".into(),
                },
                "string" if s.get("format").and_then(Value::as_str) == Some("date-time") => "timestamp".into(),
                other => other.to_owned(),
            },
            _ if s.get("properties").is_some() => "object".into(),
            _ => "any".into(),
        }
    }

    /// The fields of an object schema (through `$ref` and `allOf`), in the document's order.
    pub fn fields(&self, s: &Value) -> Vec<Field> {
        let s = self.resolve(s);
        if let Some(parts) = s.get("allOf").and_then(Value::as_array) {
            return parts.iter().flat_map(|p| self.fields(p)).collect();
        }
        let required: Vec<&str> =
            s.get("required").and_then(Value::as_array).map_or_else(Vec::new, |r| r.iter().filter_map(Value::as_str).collect());
        let Some(props) = s.get("properties").and_then(Value::as_object) else { return Vec::new() };
        props
            .iter()
            .map(|(name, p)| Field {
                name: name.clone(),
                ty: self.type_label(p),
                required: required.contains(&name.as_str()),
                description: self.description_of(p),
            })
            .collect()
    }

    /// A schema's own description, else that of what it refers to.
    pub fn description_of(&self, s: &Value) -> String {
        let own = s.get("description").and_then(Value::as_str);
        let text = own.or_else(|| self.resolve(s).get("description").and_then(Value::as_str)).or_else(|| {
            // `X or null`: the description of X.
            let variants = s.get("oneOf").and_then(Value::as_array)?;
            variants.iter().find_map(|v| v.get("description").or_else(|| self.resolve(v).get("description")).and_then(Value::as_str))
        });
        text.map(clean).unwrap_or_default()
    }

    /// An example value for a schema: the document's own example where it has one, else one made
    /// from the types (the first enum value, a fixed timestamp, …).
    pub fn example(&self, s: &Value) -> Value {
        self.example_at(s, 0)
    }

    fn example_at(&self, s: &Value, depth: usize) -> Value {
        if depth > 12 {
            return Value::Null;
        }
        if let Some(e) = s.get("example") {
            return e.clone();
        }
        if let Some(e) = s.get("examples").and_then(Value::as_array).and_then(|e| e.first()) {
            return e.clone();
        }
        if s.get("$ref").is_some() {
            return self.example_at(self.resolve(s), depth + 1);
        }
        if let Some(variants) = s.get("oneOf").or_else(|| s.get("anyOf")).and_then(Value::as_array) {
            let first = variants.iter().find(|v| v.get("type").and_then(Value::as_str) != Some("null"));
            return first.map_or(Value::Null, |v| self.example_at(v, depth + 1));
        }
        if let Some(parts) = s.get("allOf").and_then(Value::as_array) {
            let mut merged = Map::new();
            for p in parts {
                if let Value::Object(o) = self.example_at(p, depth + 1) {
                    merged.extend(o);
                }
            }
            return Value::Object(merged);
        }
        if let Some(first) = s.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
            return first.clone();
        }
        let ty = match s.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null"),
            _ if s.get("properties").is_some() => "object",
            _ => "",
        };
        match ty {
            "object" => {
                let props = s.get("properties").and_then(Value::as_object);
                Value::Object(props.map_or_else(Map::new, |p| p.iter().map(|(k, v)| (k.clone(), self.example_at(v, depth + 1))).collect()))
            }
            "array" => match s.get("items") {
                Some(items) => json!([self.example_at(items, depth + 1)]),
                None => json!([]),
            },
            "string" if s.get("format").and_then(Value::as_str) == Some("date-time") => json!("2026-06-03T18:14:02.187Z"),
            "string" => json!("string"),
            "integer" => json!(s.get("minimum").and_then(Value::as_i64).unwrap_or(0).max(100)),
            "number" => json!(0.5),
            "boolean" => json!(true),
            _ => Value::Null,
        }
    }
}

fn is_object(s: &Value) -> bool {
    s.get("properties").is_some() || s.get("allOf").is_some() || s.get("type").and_then(Value::as_str) == Some("object")
}

/// A description as the pages print it: without the `(CONTRACT §n)` pointers the code's
/// docstrings carry for its developers (the contract is not part of the published docs).
pub(super) fn clean(text: &str) -> String {
    let mut out = text.to_owned();
    while let Some(start) = out.find(" (CONTRACT §") {
        match out[start..].find(')') {
            Some(end) => out.replace_range(start..start + end + 1, ""),
            None => break,
        }
    }
    out
}

/// Joins a docstring's wrapped lines into paragraphs (a blank line still separates two).
/// A paragraph holding a table keeps its lines.
pub(super) fn paragraphs(text: &str) -> String {
    let join = |p: &str| {
        let sep = if p.lines().any(|l| l.starts_with('|')) { "\n" } else { " " };
        p.lines().map(str::trim_end).collect::<Vec<_>>().join(sep).trim().to_owned()
    };
    clean(text).split("\n\n").map(join).filter(|p| !p.is_empty()).collect::<Vec<_>>().join("\n\n")
}

/// Text that fits in one table cell.
pub(super) fn cell(text: &str) -> String {
    let one_line = clean(text).split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.replace('|', "\\|")
}

/// A JSON value as a fenced block.
pub(super) fn json_block(v: &Value) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    format!("```json\n{text}\n```\n")
}

/// A table of fields, or nothing when there are none.
pub(super) fn field_table(fields: &[Field]) -> String {
    if fields.is_empty() {
        return String::new();
    }
    let mut out = String::from("| field | type | required | description |\n| --- | --- | --- | --- |\n");
    for f in fields {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            f.name,
            cell(&f.ty),
            if f.required { "yes" } else { "no" },
            cell(&f.description)
        ));
    }
    out
}

/// A heading's GitHub anchor: lower case, spaces to dashes, punctuation dropped.
pub(super) fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_pointers_are_dropped_and_lines_joined() {
        assert_eq!(clean("The body (CONTRACT §1). What (CONTRACT §3.2): x"), "The body. What: x");
        assert_eq!(paragraphs("one\ntwo\n\nthree\n"), "one two\n\nthree");
        assert_eq!(paragraphs("a table:\n\n| a |\n| --- |"), "a table:\n\n| a |\n| --- |");
        assert_eq!(cell("a | b\nc"), "a \\| b c");
        assert_eq!(anchor("Organizations & keys"), "organizations--keys");
    }

    #[test]
    fn an_example_is_built_from_types_when_the_document_has_none() {
        let spec = Spec { root: json!({"components": {"schemas": {"S": {"type": "string", "enum": ["a", "b"]}}}}) };
        let schema = json!({"type": "object", "properties": {
            "s": {"$ref": "#/components/schemas/S"},
            "n": {"type": ["integer", "null"]},
            "t": {"type": "string", "format": "date-time"},
            "l": {"type": "array", "items": {"type": "string", "examples": ["x"]}}
        }});
        assert_eq!(spec.example(&schema), json!({"s": "a", "n": 100, "t": "2026-06-03T18:14:02.187Z", "l": ["x"]}));
        assert_eq!(spec.type_label(&json!({"type": ["integer", "null"]})), "integer or null");
        assert_eq!(spec.type_label(&json!({"$ref": "#/components/schemas/S"})), "`a`, `b`");
    }
}
