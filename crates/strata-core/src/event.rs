//! The event log: the outbox webhooks drain. An event is appended in the same transaction as the
//! change it reports, typed from the catalog of CONTRACT §6.

use serde_json::Value;

use crate::clock::Timestamp;
use crate::id::{EventId, OrgId, ProjectId};

macro_rules! catalog {
    ($($variant:ident => $name:literal),* $(,)?) => {
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
        }
    };
}

catalog! {
    JobCompleted => "job.completed",
    JobFailed => "job.failed",
    JobCanceled => "job.canceled",
    ContentGenerated => "content.generated",
    PostScheduled => "post.scheduled",
    PostPublished => "post.published",
    PostFailed => "post.failed",
    PostCanceled => "post.canceled",
    TestPing => "test.ping",
    OrganizationCreated => "organization.created",
    OrganizationSuspended => "organization.suspended",
    OrganizationResumed => "organization.resumed",
    OrganizationArchived => "organization.archived",
    CreditsAllocated => "credits.allocated",
    CreditsRefilled => "credits.refilled",
    CreditsLow => "credits.low",
    ApiKeyCreated => "api_key.created",
    ApiKeyRotated => "api_key.rotated",
    ApiKeyRevoked => "api_key.revoked",
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
    pub event_type: Option<EventType>,
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
