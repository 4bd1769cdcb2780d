//! The audit log (CONTRACT §7): every write and every rejection, stamped with who, where and
//! which request. Entries are written in the same transaction as the change they record.

use serde_json::Value;

use crate::clock::Timestamp;
use crate::id::{ApiKeyId, AuditId, OrgId, ProjectId, RequestId};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Actor {
    PartnerApi,
    Operator,
    System,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::PartnerApi => "partner_api",
            Actor::Operator => "operator",
            Actor::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "partner_api" => Some(Self::PartnerApi),
            "operator" => Some(Self::Operator),
            "system" => Some(Self::System),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct AuditEntry {
    pub id: AuditId,
    pub event_type: String,
    pub occurred_at: Timestamp,
    pub request_id: Option<RequestId>,
    pub org_id: Option<OrgId>,
    pub project_id: Option<ProjectId>,
    pub api_key_id: Option<ApiKeyId>,
    pub actor: Actor,
    pub data: Value,
    pub seq: i64,
}

/// Filters of `GET /v1/audit-log`.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Any of these types; empty means every type.
    pub event_types: Vec<String>,
    pub project_id: Option<ProjectId>,
    pub api_key_id: Option<ApiKeyId>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}
