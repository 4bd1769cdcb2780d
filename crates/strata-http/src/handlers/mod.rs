//! Handlers, one module per resource. A handler parses the request into a domain command and
//! calls one service; no rule and no SQL lives here.

pub mod content;
pub mod credits;
pub mod keys;
pub mod logs;
pub mod meta;
pub mod orgs;
pub mod projects;
pub mod usage;
pub mod webhooks;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use strata_core::cursor::{Page, PageRequest};
use strata_core::error::CoreError;
use strata_core::wire::PageView;

use crate::AppState;

/// The query of a list that takes nothing but its page: `limit` and `cursor`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

impl PageQuery {
    pub fn page(&self, app: &AppState, kind: &str, default: u32, max: u32) -> Result<PageRequest, CoreError> {
        page_request(app, self.limit.as_deref(), self.cursor.as_deref(), kind, default, max)
    }
}

/// Parses `limit` (`default` when absent, at most `max`) and `cursor` for list `kind`.
pub(crate) fn page_request(
    app: &AppState,
    limit: Option<&str>,
    cursor: Option<&str>,
    kind: &str,
    default: u32,
    max: u32,
) -> Result<PageRequest, CoreError> {
    PageRequest::parse(&app.strata.secret, kind, limit, cursor, default, max)
}

/// Parses a list filter that may repeat in the query string (`?status=a&status=b`): the list
/// means any of its values, and an empty one no filter. A value `parse` refuses is 422 VALIDATION
/// naming `field`, with `expected` saying what is allowed.
pub(crate) fn any_of<T>(values: &[String], field: &str, expected: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, CoreError> {
    values
        .iter()
        .map(|v| parse(v).ok_or_else(|| CoreError::validation(field, format!("{v:?} is not allowed: must be {expected}"))))
        .collect()
}

/// A page as the contract shows it: `{items, nextCursor}`.
pub(crate) fn page_view<T: Serialize>(page: Page<T>) -> PageView<T> {
    PageView::from(page)
}

/// Refuses body fields outside `allowed` (for bodies read as a map, where absent and null differ).
pub(crate) fn only_fields(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), CoreError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(CoreError::validation(k, "is not a known field")),
        None => Ok(()),
    }
}

/// Accepts an empty body (or `{}`) and nothing else.
pub(crate) fn no_fields(body: &[u8]) -> Result<(), CoreError> {
    let m: Map<String, Value> = crate::extract::parse_json(body)?;
    only_fields(&m, &[])
}

/// Reads an optional string field that may be `null` (→ `Some(None)`) or absent (→ `None`).
pub(crate) fn nullable_string(obj: &Map<String, Value>, field: &str) -> Result<Option<Option<String>>, CoreError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(CoreError::validation(field, "must be a string or null")),
    }
}
