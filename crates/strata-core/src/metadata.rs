//! Partner metadata on orgs, allocations and endpoints (CONTRACT §1, "Metadata"): string → string
//! with bounds, and the key-by-key merge a PATCH applies.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::CoreError;

const MAX_KEYS: usize = 50;
const MAX_KEY_CHARS: usize = 40;
const MAX_VALUE_CHARS: usize = 500;
const MAX_BYTES: usize = 16 * 1024;

/// Validated metadata; insertion order is kept for display.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize)]
#[serde(transparent)]
pub struct Metadata(Map<String, Value>);

/// What a PATCH asks of the metadata.
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataPatch {
    /// `"metadata": null`.
    Clear,
    /// Each key set to a value, or removed (`""`).
    Merge(Vec<(String, Option<String>)>),
}

impl Metadata {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// Parses a create body's `metadata`. Absent or null is empty; `""` values are dropped.
    pub fn parse_create(value: Option<&Value>, field: &str) -> Result<Self, CoreError> {
        match value {
            None | Some(Value::Null) => Ok(Self::default()),
            Some(v) => {
                let mut out = Metadata::default();
                for (k, val) in entries(v, field)? {
                    match val {
                        Some(s) if !s.is_empty() => {
                            out.0.insert(k, Value::String(s));
                        }
                        Some(_) => {}
                        None => return Err(CoreError::validation(&key_field(field, &k), "null is not allowed; values must be strings")),
                    }
                }
                out.check(field)?;
                Ok(out)
            }
        }
    }

    /// Reads the stored JSON text.
    pub fn from_stored(s: &str) -> Self {
        match serde_json::from_str(s) {
            Ok(Value::Object(m)) => Self(m),
            _ => Self::default(),
        }
    }

    pub fn to_stored(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }

    /// Applies a patch and checks the bounds on the result.
    pub fn apply(&self, patch: &MetadataPatch, field: &str) -> Result<Self, CoreError> {
        let mut out = match patch {
            MetadataPatch::Clear => return Ok(Self::default()),
            MetadataPatch::Merge(_) => self.clone(),
        };
        if let MetadataPatch::Merge(pairs) = patch {
            for (k, v) in pairs {
                match v {
                    Some(s) if !s.is_empty() => {
                        out.0.insert(k.clone(), Value::String(s.clone()));
                    }
                    _ => {
                        out.0.shift_remove(k);
                    }
                }
            }
        }
        out.check(field)?;
        Ok(out)
    }

    fn check(&self, field: &str) -> Result<(), CoreError> {
        if self.0.len() > MAX_KEYS {
            return Err(CoreError::validation(field, format!("at most {MAX_KEYS} keys")));
        }
        if self.to_stored().len() > MAX_BYTES {
            return Err(CoreError::validation(field, "exceeds 16 KB"));
        }
        Ok(())
    }
}

impl MetadataPatch {
    /// Parses a PATCH body's `metadata` (present in the body; absence is "unchanged").
    pub fn parse(value: &Value, field: &str) -> Result<Self, CoreError> {
        if value.is_null() {
            return Ok(Self::Clear);
        }
        let mut pairs = Vec::new();
        for (k, v) in entries(value, field)? {
            match v {
                Some(s) => pairs.push((k, if s.is_empty() { None } else { Some(s) })),
                None => return Err(CoreError::validation(&key_field(field, &k), "null is not allowed; send \"\" to remove a key")),
            }
        }
        Ok(Self::Merge(pairs))
    }
}

/// The field a per-key error names: `metadata.<key>` (the key as sent).
fn key_field(field: &str, key: &str) -> String {
    format!("{field}.{key}")
}

/// The (key, value) pairs of a metadata object, with each key and value bounded. A `None` value
/// is a JSON null (the caller decides whether that is allowed).
fn entries(v: &Value, field: &str) -> Result<Vec<(String, Option<String>)>, CoreError> {
    let Value::Object(m) = v else {
        return Err(CoreError::validation(field, "must be an object of string values"));
    };
    if m.len() > MAX_KEYS {
        return Err(CoreError::validation(field, format!("at most {MAX_KEYS} keys")));
    }
    let mut out = Vec::with_capacity(m.len());
    for (k, val) in m {
        if k.is_empty() || k.chars().count() > MAX_KEY_CHARS {
            return Err(CoreError::validation(field, format!("keys must be 1–{MAX_KEY_CHARS} characters")));
        }
        match val {
            Value::String(s) if s.chars().count() > MAX_VALUE_CHARS => {
                return Err(CoreError::validation(&key_field(field, k), format!("values are at most {MAX_VALUE_CHARS} characters")));
            }
            Value::String(s) => out.push((k.clone(), Some(s.clone()))),
            Value::Null => out.push((k.clone(), None)),
            _ => return Err(CoreError::validation(&key_field(field, k), "values must be strings")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn md(v: Value) -> Metadata {
        Metadata::parse_create(Some(&v), "metadata").unwrap()
    }

    #[test]
    fn patch_sets_removes_and_keeps_keys() {
        let base = md(json!({"a": "1", "b": "2"}));
        let patch = MetadataPatch::parse(&json!({"b": "", "c": "3"}), "metadata").unwrap();
        let out = base.apply(&patch, "metadata").unwrap();
        assert_eq!(serde_json::to_value(&out).unwrap(), json!({"a": "1", "c": "3"}));
    }

    #[test]
    fn null_clears_and_per_key_null_is_rejected() {
        let base = md(json!({"a": "1"}));
        let clear = MetadataPatch::parse(&Value::Null, "metadata").unwrap();
        assert_eq!(base.apply(&clear, "metadata").unwrap(), Metadata::default());
        assert!(MetadataPatch::parse(&json!({"a": null}), "metadata").is_err());
    }

    #[test]
    fn bounds_are_enforced() {
        let long_key = "k".repeat(41);
        assert!(Metadata::parse_create(Some(&json!({ long_key: "v" })), "metadata").is_err());
        assert!(Metadata::parse_create(Some(&json!({"k": "v".repeat(501)})), "metadata").is_err());
        assert!(Metadata::parse_create(Some(&json!({"k": 1})), "metadata").is_err());
        assert!(Metadata::parse_create(Some(&json!(["k"])), "metadata").is_err());
        let many: Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert!(Metadata::parse_create(Some(&Value::Object(many)), "metadata").is_err());
        let fifty: Map<String, Value> = (0..50).map(|i| (format!("k{i}"), json!("v".repeat(320)))).collect();
        assert!(Metadata::parse_create(Some(&Value::Object(fifty)), "metadata").is_err(), "over 16 KB");
    }

    #[test]
    fn a_merge_cannot_grow_past_fifty_keys() {
        let full: Map<String, Value> = (0..50).map(|i| (format!("k{i}"), json!("v"))).collect();
        let base = md(Value::Object(full));
        let patch = MetadataPatch::parse(&json!({"extra": "v"}), "metadata").unwrap();
        assert!(base.apply(&patch, "metadata").is_err());
    }
}
