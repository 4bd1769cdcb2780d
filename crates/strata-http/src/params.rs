//! The path and query parameters of the routes, as the OpenAPI document describes them. Path ids
//! accept the prefixed form or the bare UUID (ULID for the `evt_`, `job_`, `cnt_`, `post_`,
//! `whe_` and `dlv_` ids); a malformed id is 422 VALIDATION naming the parameter.

#![expect(dead_code, reason = "read by the OpenAPI derive only; the handlers parse the same names from the request")]

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
            #[param(min_length = 1)]
            cursor: Option<String>,
        }
    };
}

list_query!(
    /// A key list.
    KeyListQuery, max = 100, default = 25 {}
);
list_query!(
    /// `GET /v1/projects/{projectId}/scheduled-posts`.
    PostListQuery, max = 100, default = 25 {}
);
