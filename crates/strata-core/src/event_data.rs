//! The `data` of each catalog event (CONTRACT §6), typed: the services build events from these
//! structs and the OpenAPI document's `webhooks` describes them from the same structs, so a field
//! cannot be renamed in one place only. Every event's `data` also carries `organizationId`
//! (added by `Strata::event`).

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, Schema};
use utoipa::openapi::{RefOr, schema::SchemaType, schema::Type};
use utoipa::{PartialSchema, ToSchema};

use crate::clock::Timestamp;
use crate::content::JobView;
use crate::event::EventType;
use crate::id::{ContainerId, EndpointId, JobId, OrgId, ProjectId, TxnId};
use crate::wire::{KeyView, OrgView, PostView};

/// `job.completed`, `job.failed`, `job.canceled`: the job as `GET /v1/jobs/:jobId` shows it.
#[derive(Serialize, ToSchema)]
pub struct JobEventData {
    pub job: JobView,
}

/// `content.generated`: one container of a completed job.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContentGeneratedData {
    pub container_id: ContainerId,
    pub job_id: JobId,
    pub project_id: ProjectId,
    #[schema(value_type = crate::schema::Format)]
    pub format: String,
    #[schema(value_type = Vec<Object>)]
    pub assets: Value,
}

/// `post.scheduled`, `post.published`, `post.failed`, `post.canceled`: the post.
#[derive(Serialize, ToSchema)]
pub struct PostEventData {
    pub post: PostView,
}

/// `test.ping`: the endpoint pinged and the caller's `payload` (null when none was sent).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestPingData {
    pub endpoint_id: EndpointId,
    /// Whatever the caller sent as `payload`, or null.
    pub payload: Option<Value>,
}

/// `organization.created`, `.suspended`, `.resumed`, `.archived`: the org after the change.
#[derive(Serialize, ToSchema)]
pub struct OrganizationEventData {
    pub organization: OrgView,
}

/// `credits.allocated` (by the parent) and `credits.refilled` (auto-refill): credits moved from
/// the parent into this org; `balance` and `available` are this org's after the move.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditsMovedData {
    pub transfer_id: TxnId,
    pub credits: i64,
    pub from_organization_id: OrgId,
    pub balance: i64,
    pub available: i64,
}

/// `credits.low`: `available` crossed below `threshold` (the refill threshold or 10 % of the cap).
#[derive(Serialize, ToSchema)]
pub struct CreditsLowData {
    pub available: i64,
    pub balance: i64,
    pub threshold: i64,
}

/// `api_key.created`, `api_key.revoked`, and `api_key.rotated`, which also names the superseded
/// key when a child key was rotated into a new one (`previousKey`; absent for an in-place
/// rotation of the caller's own key).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyEventData {
    pub api_key: KeyView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_key: Option<KeyView>,
}

impl EventType {
    /// The schema of this event's `data`: its struct's fields plus `organizationId`.
    pub fn data_schema(self) -> RefOr<Schema> {
        let base = match self {
            EventType::JobCompleted | EventType::JobFailed | EventType::JobCanceled => JobEventData::schema(),
            EventType::ContentGenerated => ContentGeneratedData::schema(),
            EventType::PostScheduled | EventType::PostPublished | EventType::PostFailed | EventType::PostCanceled => {
                PostEventData::schema()
            }
            EventType::TestPing => TestPingData::schema(),
            EventType::OrganizationCreated
            | EventType::OrganizationSuspended
            | EventType::OrganizationResumed
            | EventType::OrganizationArchived => OrganizationEventData::schema(),
            EventType::CreditsAllocated | EventType::CreditsRefilled => CreditsMovedData::schema(),
            EventType::CreditsLow => CreditsLowData::schema(),
            EventType::ApiKeyCreated | EventType::ApiKeyRotated | EventType::ApiKeyRevoked => ApiKeyEventData::schema(),
        };
        match base {
            RefOr::T(Schema::Object(mut o)) => {
                o.properties.insert("organizationId".into(), OrgId::schema());
                o.required.push("organizationId".into());
                RefOr::T(Schema::Object(o))
            }
            other => other,
        }
    }

    /// The component schemas `data_schema` refers to.
    pub fn data_schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        JobEventData::schemas(out);
        ContentGeneratedData::schemas(out);
        PostEventData::schemas(out);
        TestPingData::schemas(out);
        OrganizationEventData::schemas(out);
        CreditsMovedData::schemas(out);
        CreditsLowData::schemas(out);
        ApiKeyEventData::schemas(out);
    }
}

/// The envelope a webhook delivery posts (and `GET /v1/events/:eventId` shows without
/// `replayOf`): `{id, type, createdAt, data, replayOf?}` for event type `ty`.
pub fn delivery_schema(ty: EventType) -> RefOr<Schema> {
    let string = || ObjectBuilder::new().schema_type(SchemaType::Type(Type::String));
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Object))
        .property("id", crate::id::EventId::schema())
        .required("id")
        .property("type", string().enum_values(Some([ty.as_str()])))
        .required("type")
        .property("createdAt", Timestamp::schema())
        .required("createdAt")
        .property("data", ty.data_schema())
        .required("data")
        .property("replayOf", string().description(Some("On a replayed delivery: the original event's id.")))
        .into()
}
