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
    /// The job, in its final state.
    pub job: JobView,
}

/// `content.generated`: one container of a completed job.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContentGeneratedData {
    /// The container now ready (`GET /v1/projects/{projectId}/content/{containerId}`).
    pub container_id: ContainerId,
    /// The job that made it.
    pub job_id: JobId,
    /// The project it belongs to.
    pub project_id: ProjectId,
    /// The format generated.
    #[schema(value_type = crate::schema::Format)]
    pub format: String,
    /// The container's assets: each with its `type` (`video`, `image`, `thumbnail`, `caption`) and
    /// its `url` (a caption has its `text` instead).
    #[schema(value_type = Vec<Object>)]
    pub assets: Value,
}

/// `post.scheduled`, `post.published`, `post.failed`, `post.canceled`: the post.
#[derive(Serialize, ToSchema)]
pub struct PostEventData {
    /// The post after the change.
    pub post: PostView,
}

/// `test.ping`: the endpoint pinged and the caller's `payload` (null when none was sent).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestPingData {
    /// The endpoint pinged.
    pub endpoint_id: EndpointId,
    /// Whatever the caller sent as `payload`, or null.
    pub payload: Option<Value>,
}

/// `organization.created`, `.suspended`, `.resumed`, `.archived`: the org after the change.
#[derive(Serialize, ToSchema)]
pub struct OrganizationEventData {
    /// The organization after the change.
    pub organization: OrgView,
}

/// `credits.allocated` (by the parent) and `credits.refilled` (auto-refill): credits moved from
/// the parent into this org; `balance` and `available` are this org's after the move.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditsMovedData {
    /// The ledger transfer that moved them.
    pub transfer_id: TxnId,
    /// Credits moved (positive).
    pub credits: i64,
    /// The parent the credits came from.
    pub from_organization_id: OrgId,
    /// This org's wallet after the move (gross).
    pub balance: i64,
    /// This org's spendable credits after the move (net of reservations).
    pub available: i64,
}

/// `credits.low`: `available` crossed below `threshold` (the refill threshold or 10 % of the cap).
#[derive(Serialize, ToSchema)]
pub struct CreditsLowData {
    /// Spendable credits now (net of reservations).
    pub available: i64,
    /// The wallet now (gross).
    pub balance: i64,
    /// The level `available` crossed below.
    pub threshold: i64,
}

/// `api_key.created`, `api_key.revoked`, and `api_key.rotated`, which also names the superseded
/// key when a child key was rotated into a new one (`previousKey`; absent for an in-place
/// rotation of the caller's own key).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyEventData {
    /// The key after the change (never its secret).
    pub api_key: KeyView,
    /// `api_key.rotated` of a child key: the key it replaced, still valid until its `graceUntil`.
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
                let org = match OrgId::schema() {
                    RefOr::T(Schema::Object(mut id)) => {
                        id.description = Some("The org the event is about: `org_` followed by a UUID.".into());
                        RefOr::T(Schema::Object(id))
                    }
                    other => other,
                };
                o.properties.insert("organizationId".into(), org);
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

/// Sample ids and times the examples share, so one example reads as one story.
mod sample {
    pub const ORG: &str = "org_d4e5f6a7-8b9c-4d0e-9f2a-3b4c5d6e7f80";
    pub const PARENT: &str = "org_2481fa5c-a404-44ed-a561-565392499abc";
    pub const PROJECT: &str = "prj_3f9a1c2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
    pub const JOB: &str = "job_01J0Z6A2K9V3N5Q7R8S4T6W1X2";
    pub const CONTAINER: &str = "cnt_01J0Z6B7M2P4R6T8V1X3Z5C7E9";
    pub const POST: &str = "post_01J0Z6C3D5F7H9K1M3P5R7T9V1";
    pub const ENDPOINT: &str = "whe_01J0Z4X8Y2B6D0F4H8K2M6P0R4";
    pub const KEY: &str = "key_c2037bb9-354d-4662-96b7-97a28ad6b6e1";
    pub const OLD_KEY: &str = "key_9b1e7c4a-2d3f-4a5b-8c6d-7e8f9a0b1c2d";
    pub const TXN: &str = "txn_5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9";
    pub const STARTED: &str = "2026-06-03T18:13:47.512Z";
    pub const AT: &str = "2026-06-03T18:14:02.187Z";
    pub const CREATED: &str = "2026-06-01T14:30:00.000Z";
}

fn job_example(status: &str, stage: &str) -> Value {
    let done = status == "completed";
    serde_json::json!({
        "jobId": sample::JOB, "kind": "content_generate", "status": status, "stage": stage,
        "progress": if done { 1.0 } else { 0.4 }, "projectId": sample::PROJECT,
        "containerIds": if done { serde_json::json!([sample::CONTAINER]) } else { serde_json::json!([]) },
        "locationUrl": format!("/v1/jobs/{}", sample::JOB), "startedAt": sample::STARTED, "finishedAt": sample::AT,
        "result": if done { serde_json::json!({"containerIds": [sample::CONTAINER], "assets": [{"containerId": sample::CONTAINER, "assets": assets_example()}]}) } else { Value::Null },
        "error": if status == "failed" { serde_json::json!({"code": "GENERATION_FAILED", "message": "the engine could not render the video"}) } else { Value::Null },
    })
}

fn assets_example() -> Value {
    let base = format!("https://assets.example.com/{}", sample::CONTAINER);
    serde_json::json!([
        {"type": "video", "url": format!("{base}/video.mp4"), "durationSeconds": 15, "width": 1080, "height": 1920},
        {"type": "thumbnail", "url": format!("{base}/thumb.jpg")},
        {"type": "caption", "text": "Variant 1"},
    ])
}

fn post_example(status: &str) -> Value {
    let at = |s: &str| if status == s { Value::from(sample::AT) } else { Value::Null };
    serde_json::json!({
        "id": sample::POST, "organizationId": sample::ORG, "projectId": sample::PROJECT, "containerId": sample::CONTAINER,
        "platform": "tiktok", "scheduledFor": "2026-06-03T18:14:00.000Z", "status": status,
        "publishedAt": at("published"), "canceledAt": at("canceled"), "createdAt": sample::CREATED,
        "updatedAt": if status == "scheduled" { sample::CREATED } else { sample::AT },
    })
}

fn org_example(status: &str) -> Value {
    let changed = if status == "active" { sample::CREATED } else { sample::AT };
    serde_json::json!({
        "id": sample::ORG, "parentOrganizationId": sample::PARENT, "name": "Acme Coffee", "status": status,
        "metadata": {"externalId": "acme-coffee"}, "billingEmail": null,
        "archivedAt": if status == "archived" { Value::from(sample::AT) } else { Value::Null },
        "createdAt": sample::CREATED, "updatedAt": changed,
    })
}

fn key_example(id: &str, status: &str) -> Value {
    let key_hex = id.trim_start_matches("key_").replace('-', "");
    serde_json::json!({
        "id": id, "organizationId": sample::ORG, "name": "acme-integration", "prefix": format!("lp_live_{}", &key_hex[..12]),
        "env": "live", "scopes": ["content:read", "content:write", "projects:read"], "rateLimitTier": "standard",
        "status": status, "killSwitch": false, "createdAt": sample::CREATED, "lastUsedAt": null, "rotatedAt": null,
        "revokedAt": if status == "revoked" { Value::from(sample::AT) } else { Value::Null }, "graceUntil": null, "supersededBy": null,
    })
}

impl EventType {
    /// A realistic `data` for this event (with its `organizationId`), for the OpenAPI document's
    /// examples and the event catalog page.
    pub fn data_example(self) -> Value {
        use serde_json::json;
        let mut data = match self {
            EventType::JobCompleted => json!({"job": job_example("completed", "done")}),
            EventType::JobFailed => json!({"job": job_example("failed", "failed")}),
            EventType::JobCanceled => json!({"job": job_example("canceled", "canceled")}),
            EventType::ContentGenerated => json!({"containerId": sample::CONTAINER, "jobId": sample::JOB, "projectId": sample::PROJECT,
                "format": "video_remix", "assets": assets_example()}),
            EventType::PostScheduled => json!({"post": post_example("scheduled")}),
            EventType::PostPublished => json!({"post": post_example("published")}),
            EventType::PostFailed => json!({"post": post_example("failed")}),
            EventType::PostCanceled => json!({"post": post_example("canceled")}),
            EventType::TestPing => json!({"endpointId": sample::ENDPOINT, "payload": {"hello": "world"}}),
            EventType::OrganizationCreated | EventType::OrganizationResumed => json!({"organization": org_example("active")}),
            EventType::OrganizationSuspended => json!({"organization": org_example("suspended")}),
            EventType::OrganizationArchived => json!({"organization": org_example("archived")}),
            EventType::CreditsAllocated => {
                json!({"transferId": sample::TXN, "credits": 5000, "fromOrganizationId": sample::PARENT, "balance": 7500, "available": 7000})
            }
            EventType::CreditsRefilled => {
                json!({"transferId": sample::TXN, "credits": 2000, "fromOrganizationId": sample::PARENT, "balance": 2900, "available": 2900})
            }
            EventType::CreditsLow => json!({"available": 900, "balance": 900, "threshold": 1000}),
            EventType::ApiKeyCreated => json!({"apiKey": key_example(sample::KEY, "active")}),
            EventType::ApiKeyRotated => {
                let mut previous = key_example(sample::OLD_KEY, "active");
                if let Value::Object(o) = &mut previous {
                    o.insert("rotatedAt".into(), Value::from(sample::AT));
                    o.insert("graceUntil".into(), Value::from("2026-06-04T18:14:02.187Z"));
                    o.insert("supersededBy".into(), Value::from(sample::KEY));
                }
                json!({"apiKey": key_example(sample::KEY, "active"), "previousKey": previous})
            }
            EventType::ApiKeyRevoked => json!({"apiKey": key_example(sample::KEY, "revoked")}),
        };
        if let Value::Object(o) = &mut data {
            o.insert("organizationId".into(), Value::from(sample::ORG));
        }
        data
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
        .examples([serde_json::json!({"id": "evt_01J0Z6D8F1H3K5M7P9R1T3V5X7", "type": ty.as_str(), "createdAt": sample::AT, "data": ty.data_example()})])
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `example` against the object `schema` (following `$ref`s into `components`), field
    /// by field and into nested objects.
    fn check(what: &str, schema: &Value, example: &Value, components: &serde_json::Map<String, Value>) {
        let schema = match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => &components[r.rsplit('/').next().unwrap()],
            None => schema,
        };
        if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
            if !example.is_null() {
                check(what, &variants[0], example, components);
            }
            return;
        }
        let (Some(props), Some(fields)) = (schema.get("properties").and_then(Value::as_object), example.as_object()) else { return };
        for (k, v) in fields {
            let p = props.get(k).unwrap_or_else(|| panic!("{what}: {k} is not in the schema"));
            check(&format!("{what}.{k}"), p, v, components);
        }
        for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            assert!(example.get(r.as_str().unwrap()).is_some(), "{what}: the example lacks {r}");
        }
    }

    #[test]
    fn every_data_example_has_the_fields_its_schema_names_and_no_others() {
        let mut list = Vec::new();
        EventType::data_schemas(&mut list);
        let components: serde_json::Map<String, Value> = list.into_iter().map(|(k, v)| (k, serde_json::to_value(v).unwrap())).collect();
        for ty in EventType::ALL {
            let schema = serde_json::to_value(ty.data_schema()).unwrap();
            check(ty.as_str(), &schema, &ty.data_example(), &components);
        }
    }
}
