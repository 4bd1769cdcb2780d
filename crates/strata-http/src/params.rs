//! The path and query parameters of the routes, as the OpenAPI document describes them. Path ids
//! accept the prefixed form or the bare UUID (ULID for the `evt_`, `job_`, `cnt_`, `post_`,
//! `whe_` and `dlv_` ids); a malformed id is 422 VALIDATION naming the parameter.

#![expect(dead_code, reason = "read by the OpenAPI derive only; the handlers parse the same names from the request")]

use strata_core::clock::Timestamp;
use strata_core::id::{ApiKeyId, ProjectId};
use utoipa::IntoParams;

macro_rules! path_param {
    ($(#[$doc:meta])* $name:ident, $param:tt, $pattern:tt) => {
        $(#[$doc])*
        #[derive(IntoParams)]
        #[into_params(parameter_in = Path)]
        pub struct $name {
            $(#[$doc])*
            #[param(rename = $param, pattern = $pattern)]
            id: String,
        }
    };
}

path_param!(
    /// The organization: `org_<uuid>` or the bare UUID.
    OrgPath, "orgId", "^(org_)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
);
path_param!(
    /// The API key: `key_<uuid>` or the bare UUID.
    KeyPath, "keyId", "^(key_)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
);
path_param!(
    /// The project: `prj_<uuid>` or the bare UUID.
    ProjectPath, "projectId", "^(prj_)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
);
path_param!(
    /// The content container: `cnt_<ULID>`.
    ContainerPath, "containerId", "^(cnt_)?[0-9A-Za-z]{26}$"
);
path_param!(
    /// The scheduled post: `post_<ULID>`.
    PostPath, "postId", "^(post_)?[0-9A-Za-z]{26}$"
);
path_param!(
    /// The job: `job_<ULID>`.
    JobPath, "jobId", "^(job_)?[0-9A-Za-z]{26}$"
);
path_param!(
    /// The webhook endpoint: `whe_<ULID>`.
    EndpointPath, "endpointId", "^(whe_)?[0-9A-Za-z]{26}$"
);
path_param!(
    /// The delivery: `dlv_<ULID>`.
    DeliveryPath, "deliveryId", "^(dlv_)?[0-9A-Za-z]{26}$"
);
path_param!(
    /// The event: `evt_<ULID>`.
    EventPath, "eventId", "^(evt_)?[0-9A-Za-z]{26}$"
);

/// Declares a list's query parameters: its filters, then `limit` (with its bounds and default)
/// and `cursor`.
macro_rules! list_query {
    ($(#[$doc:meta])* $name:ident, max = $max:tt, default = $default:tt { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(IntoParams)]
        #[into_params(parameter_in = Query, rename_all = "camelCase")]
        pub struct $name {
            $($(#[$fdoc])* #[param(inline)] $field: Option<$ty>,)*
            /// Page size.
            #[param(minimum = 1, maximum = $max, default = $default)]
            limit: Option<u32>,
            /// The previous page's `nextCursor` (opaque; a tampered cursor is 422).
            cursor: Option<String>,
        }
    };
}

list_query!(
    /// `GET /v1/organizations`.
    OrgListQuery, max = 200, default = 25 {
        /// Only children in this status.
        status: strata_core::org::OrgStatus,
    }
);
list_query!(
    /// A key list.
    KeyListQuery, max = 100, default = 25 {}
);
list_query!(
    /// A credit ledger.
    CreditEventsQuery, max = 100, default = 25 {
        /// Only events of this project.
        project_id: ProjectId,
        /// Only events of this kind.
        event_type: strata_core::schema::CreditEventType,
        /// From this instant on (inclusive; must end in `Z`).
        since: Timestamp,
        /// Before this instant (must end in `Z`).
        until: Timestamp,
    }
);
list_query!(
    /// `GET /v1/projects`.
    ProjectListQuery, max = 200, default = 25 {
        /// Only projects in this status.
        status: strata_core::project::ProjectStatus,
        /// A case-insensitive prefix of the name.
        search: String,
        /// Exactly this `customerExternalId`.
        customer_external_id: String,
    }
);
list_query!(
    /// `GET /v1/projects/{projectId}/scheduled-posts`.
    PostListQuery, max = 100, default = 25 {}
);
list_query!(
    /// `GET /v1/webhook-endpoints`.
    EndpointListQuery, max = 100, default = 25 {
        /// Only endpoints of this project.
        project_id: ProjectId,
        /// Only endpoints in this status.
        status: strata_core::webhook::EndpointStatus,
    }
);
list_query!(
    /// An endpoint's deliveries.
    DeliveryListQuery, max = 100, default = 25 {
        /// Only deliveries of this event type.
        event_type: strata_core::event::EventType,
        /// Only deliveries in this status.
        status: strata_core::webhook::DeliveryStatus,
    }
);
list_query!(
    /// `GET /v1/audit-log`.
    AuditQuery, max = 200, default = 50 {
        /// Only entries of this type (e.g. `organization.created`).
        event_type: String,
        /// Only entries about this project.
        project_id: ProjectId,
        /// Only entries made with this key.
        api_key_id: ApiKeyId,
        /// From this instant on (must end in `Z`).
        since: Timestamp,
        /// Before this instant (must end in `Z`).
        until: Timestamp,
    }
);

/// `GET /v1/events`: the org's event log.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events of this type.
    #[param(inline, rename = "type")]
    event_type: Option<strata_core::event::EventType>,
    /// From this instant on (must end in `Z`).
    #[param(inline)]
    since: Option<Timestamp>,
    /// Before this instant (must end in `Z`).
    #[param(inline)]
    until: Option<Timestamp>,
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 25)]
    limit: Option<u32>,
    /// The previous page's `nextCursor` (opaque; a tampered cursor is 422).
    cursor: Option<String>,
}
