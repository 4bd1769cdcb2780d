//! The event log: the outbox webhooks drain. An event is appended in the same transaction as the
//! change it reports, typed from the catalog of CONTRACT §6.

use serde_json::Value;

use crate::clock::Timestamp;
use crate::id::{EventId, OrgId, ProjectId};

macro_rules! catalog {
    ($($variant:ident => $name:literal, $when:literal),* $(,)?) => {
        /// The event catalog.
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
        pub enum EventType { $($variant),* }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name),* }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($name => Some(EventType::$variant),)* _ => None }
            }

            /// When the event is sent, in one sentence (the OpenAPI `webhooks` and the event
            /// catalog page print it).
            pub fn when(self) -> &'static str {
                match self { $(EventType::$variant => $when),* }
            }
        }
    };
}

catalog! {
    JobCompleted => "job.completed", "A content generation job finished; its containers are ready.",
    JobFailed => "job.failed", "A content generation job failed; the job's `error` says why.",
    JobCanceled => "job.canceled", "A content generation job was canceled.",
    ContentGenerated => "content.generated", "A container of a completed job is ready: one event per container.",
    PostScheduled => "post.scheduled", "A post was scheduled (`POST /v1/projects/{projectId}/scheduled-posts`).",
    PostPublished => "post.published", "A scheduled post was published at its `scheduledFor`.",
    PostFailed => "post.failed", "A scheduled post could not be published.",
    PostCanceled => "post.canceled", "A scheduled post was canceled before it was published.",
    TestPing => "test.ping", "`POST /v1/webhook-endpoints/{endpointId}/test` was called: sent to that endpoint only, whatever its event filter.",
    OrganizationCreated => "organization.created", "A child organization was created.",
    OrganizationSuspended => "organization.suspended", "A child organization was suspended: its keys get 503 KILL_SWITCH and its deliveries wait.",
    OrganizationResumed => "organization.resumed", "A suspended child organization was resumed.",
    OrganizationArchived => "organization.archived", "A child organization was archived (terminal).",
    CreditsAllocated => "credits.allocated", "The parent moved credits into this org (`POST /v1/organizations/{orgId}/credits/allocate`).",
    CreditsRefilled => "credits.refilled", "Auto-refill moved credits from the parent into this org after its `available` fell below the refill threshold.",
    CreditsLow => "credits.low", "The org's `available` crossed below its refill threshold, or below 10 % of its monthly cap.",
    ApiKeyCreated => "api_key.created", "An API key was created.",
    ApiKeyRotated => "api_key.rotated", "An API key was rotated.",
    ApiKeyRevoked => "api_key.revoked", "An API key was revoked.",
}

#[derive(Clone, Debug)]
pub struct Event {
    pub id: EventId,
    pub event_type: EventType,
    pub org_id: OrgId,
    pub project_id: Option<ProjectId>,
    /// The delivery's `data`; always carries `organizationId`.
    pub data: Value,
    pub created_at: Timestamp,
    pub seq: i64,
}

/// Filters of `GET /v1/events`.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Any of these types; empty means every type.
    pub event_types: Vec<EventType>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_name_round_trips() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(*t));
        }
        assert_eq!(EventType::parse("job.started"), None);
    }
}
