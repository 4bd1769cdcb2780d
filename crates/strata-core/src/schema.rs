//! OpenAPI schemas of the domain's own wire types (ids, timestamps, metadata, scopes and the
//! string enums a view sends as `&'static str`). The HTTP crate assembles the document; the
//! schemas live beside the types so a type and its description cannot drift apart.

use std::borrow::Cow;

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{RefOr, schema::AdditionalProperties};
use utoipa::{PartialSchema, ToSchema};

/// A string schema limited to `values`.
pub fn string_enum<'a>(values: impl IntoIterator<Item = &'a str>, description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .enum_values(Some(values.into_iter().map(str::to_owned)))
        .description(Some(description))
        .into()
}

/// Gives a domain enum a named string-enum schema built from its own `as_str`. The match
/// fails to compile when a variant is added without being listed here.
macro_rules! string_enum_schema {
    ($ty:ty, $desc:literal, [$($variant:path),+ $(,)?]) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                fn _every_variant_is_listed(v: $ty) {
                    match v { $($variant)|+ => {} }
                }
                string_enum([$($variant.as_str()),+], $desc).into()
            }
        }
        impl ToSchema for $ty {}
    };
}

use crate::apikey::Env;
use crate::audit::Actor;
use crate::content::{ContainerStatus, JobStatus};
use crate::key::KeyStatus;
use crate::org::OrgStatus;
use crate::post::PostStatus;
use crate::project::ProjectStatus;
use crate::webhook::{DeliveryStatus, EndpointScope, EndpointStatus};

string_enum_schema!(Env, "The key's environment: `test` keys spend no credits and get fixtures.", [Env::Live, Env::Test]);
string_enum_schema!(
    OrgStatus,
    "`active` → `suspended` ⇄ `active`; `active|suspended` → `archived` (terminal).",
    [OrgStatus::Active, OrgStatus::Suspended, OrgStatus::Archived]
);
string_enum_schema!(KeyStatus, "A rotated key past its grace window reads as `revoked`.", [KeyStatus::Active, KeyStatus::Revoked]);
string_enum_schema!(ProjectStatus, "A project's state; archiving is soft.", [ProjectStatus::Active, ProjectStatus::Archived]);
string_enum_schema!(
    PostStatus,
    "A scheduled post's state.",
    [PostStatus::Scheduled, PostStatus::Published, PostStatus::Failed, PostStatus::Canceled]
);
string_enum_schema!(
    JobStatus,
    "A job is `running` until it ends `completed`, `failed` or `canceled`.",
    [JobStatus::Running, JobStatus::Completed, JobStatus::Failed, JobStatus::Canceled]
);
string_enum_schema!(
    ContainerStatus,
    "A content container's state.",
    [ContainerStatus::Queued, ContainerStatus::Processing, ContainerStatus::Completed, ContainerStatus::Failed, ContainerStatus::Canceled]
);
string_enum_schema!(
    EndpointStatus,
    "`auto_paused` after 20 consecutive failures, until PATCHed `active`.",
    [EndpointStatus::Active, EndpointStatus::Paused, EndpointStatus::AutoPaused]
);
string_enum_schema!(
    EndpointScope,
    "`own`: this org's events; `all_children`: also every direct child's (needs `org:admin`).",
    [EndpointScope::Own, EndpointScope::AllChildren]
);
string_enum_schema!(
    DeliveryStatus,
    "A delivery's state.",
    [DeliveryStatus::Pending, DeliveryStatus::Delivering, DeliveryStatus::Delivered, DeliveryStatus::Failed, DeliveryStatus::Abandoned]
);
string_enum_schema!(
    Actor,
    "Who did it: a partner's API call, the operator's command line, or strata itself.",
    [Actor::PartnerApi, Actor::Operator, Actor::System]
);

/// The rate-limit tiers a partner can see (`internal` never shows).
pub struct PublicTier;

impl PartialSchema for PublicTier {
    fn schema() -> RefOr<Schema> {
        use crate::apikey::Tier;
        string_enum([Tier::Sandbox, Tier::Standard, Tier::Pilot, Tier::Partner].map(Tier::as_str), "The key's rate-limit tier.").into()
    }
}

impl ToSchema for PublicTier {
    fn name() -> Cow<'static, str> {
        "RateLimitTier".into()
    }
}

/// A scope a key may hold (CONTRACT §2).
pub struct ScopeName;

impl PartialSchema for ScopeName {
    fn schema() -> RefOr<Schema> {
        use crate::scope::Scope;
        let all = Scope::DATA.iter().copied().chain([Scope::OrgAdmin, Scope::AllData]).map(Scope::as_str).collect::<Vec<_>>();
        string_enum(
            all,
            "`org:admin` is the control plane (never delegable to a child key) and implies every data scope; `*` is every data scope but not `org:admin`.",
        )
        .into()
    }
}

impl ToSchema for ScopeName {
    fn name() -> Cow<'static, str> {
        "Scope".into()
    }
}

impl PartialSchema for crate::scope::Scopes {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new().items(ScopeName::schema()).description(Some("The key's scopes.")).into()
    }
}

impl ToSchema for crate::scope::Scopes {
    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        out.push((ScopeName::name().into(), ScopeName::schema()));
    }
}

impl PartialSchema for crate::clock::Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime)))
            .description(Some("RFC 3339 UTC with `Z` and milliseconds."))
            .examples(["2026-06-03T18:14:02.187Z"])
            .into()
    }
}

impl ToSchema for crate::clock::Timestamp {}

impl PartialSchema for crate::metadata::Metadata {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Object))
            .additional_properties(Some(AdditionalProperties::RefOr(
                ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).max_length(Some(500)).into(),
            )))
            .max_properties(Some(50))
            .description(Some("String → string: keys ≤ 40 characters, values ≤ 500, at most 50 keys, 16 KB in all."))
            .examples([serde_json::json!({ "externalId": "cust_8841" })])
            .into()
    }
}

impl ToSchema for crate::metadata::Metadata {}

/// A string schema for a prefixed id.
pub fn id_schema(prefix: &str, pattern: &str, what: &str) -> Schema {
    // One fixed sample per kind, so the generated docs' payload examples stay put.
    let sample = if pattern.contains("{26}") { "01J0Z5Q6M8W3D2V7K9X4T1B6C5" } else { "d4e5f6a7-8b9c-4d0e-9f2a-3b4c5d6e7f80" };
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .pattern(Some(pattern))
        .description(Some(format!("{what}: `{prefix}…`.")))
        .examples([serde_json::json!(format!("{prefix}{sample}"))])
        .into()
}

impl PartialSchema for crate::event::EventType {
    fn schema() -> RefOr<Schema> {
        string_enum(crate::event::EventType::ALL.iter().map(|t| t.as_str()), "An event type of the catalog.").into()
    }
}

impl ToSchema for crate::event::EventType {}

/// Where a job is (`queued`, `planning`, `generating`, `rendering`) or how it ended.
pub struct JobStage;

impl PartialSchema for JobStage {
    fn schema() -> RefOr<Schema> {
        string_enum(crate::content::STAGES, "Where a running job is, or how it ended.").into()
    }
}

impl ToSchema for JobStage {}

/// A wallet's billing status.
pub struct BillingStatus;

impl PartialSchema for BillingStatus {
    fn schema() -> RefOr<Schema> {
        string_enum(
            crate::credits::BILLING_STATUSES,
            "`low` below a low mark (the refill threshold or 10 % of the cap), `exhausted` with nothing available.",
        )
        .into()
    }
}

impl ToSchema for BillingStatus {}

/// The kind of a credit ledger event.
pub struct CreditEventType;

impl PartialSchema for CreditEventType {
    fn schema() -> RefOr<Schema> {
        string_enum(crate::credits::CREDIT_EVENT_TYPES, "What moved the credits.").into()
    }
}

impl ToSchema for CreditEventType {}

/// A content format.
pub struct Format;

impl PartialSchema for Format {
    fn schema() -> RefOr<Schema> {
        string_enum(crate::content::FORMATS, "A content format; `auto` lets the engine choose.").into()
    }
}

impl ToSchema for Format {}

/// A social platform a post can be scheduled on.
pub struct Platform;

impl PartialSchema for Platform {
    fn schema() -> RefOr<Schema> {
        string_enum(crate::post::PLATFORMS, "Where the post is published.").into()
    }
}

impl ToSchema for Platform {}

impl PartialSchema for crate::metadata::MetadataPatch {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{OneOfBuilder, Type as T};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(T::Object))
                    .additional_properties(Some(AdditionalProperties::RefOr(
                        ObjectBuilder::new().schema_type(SchemaType::Type(T::String)).max_length(Some(500)).into(),
                    )))
                    .max_properties(Some(50)),
            )
            .item(ObjectBuilder::new().schema_type(SchemaType::Type(T::Null)))
            .description(Some("Merged key by key: a sent key is set, `\"\"` removes it; `null` clears all. A per-key `null` is 422."))
            .into()
    }
}

impl ToSchema for crate::metadata::MetadataPatch {}
