//! The OpenAPI 3.1 document, generated from the code. Each handler carries `#[utoipa::path]`
//! (its summary, parameters, body and its own answers); the router registers the handlers
//! through utoipa-axum, so the route map and the document come from one list. This module adds
//! what holds on every route (CONTRACT §1): the bearer scheme, the shared headers and parameters,
//! the error envelope and the errors any authenticated route can answer, and the `webhooks`.

use std::sync::OnceLock;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, Operation, Parameter, ParameterBuilder, ParameterIn, PathItem, PathItemBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{Components, ContentBuilder, InfoBuilder, LicenseBuilder, OpenApi, Paths, Ref, RefOr, Required, ServerBuilder};
use utoipa::{PartialSchema, ToSchema};

use strata_core::event::EventType;

use crate::error::ErrorEnvelope;

/// The security scheme every authenticated route names.
pub const BEARER: &str = "bearer";

/// The document as served at `GET /openapi.json` and committed as `openapi.json`:
/// pretty-printed, keys in a stable order.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut text = document().to_pretty_json().unwrap_or_else(|e| panic!("the OpenAPI document must serialise: {e}"));
        text.push('\n');
        text
    })
}

/// Builds the whole document: the routes' own descriptions plus what holds on every route.
pub fn document() -> OpenApi {
    let (_, mut doc) = crate::router::api_routes().split_for_parts();
    doc.openapi = utoipa::openapi::OpenApiVersion::Version31;
    doc.info = InfoBuilder::new()
        .title("strata: Layers Partner API control plane")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(format!("{}\n{}", include_str!("openapi_intro.md").trim_end(), tier_table())))
        .license(Some(LicenseBuilder::new().name("Apache-2.0").identifier(Some("Apache-2.0")).build()))
        .build();
    doc.servers = Some(vec![ServerBuilder::new().url("/").description(Some("This server")).build()]);
    doc.security = Some(vec![SecurityRequirement::new::<_, _, &str>(BEARER, [])]);
    doc.tags = Some(tags());
    let components = doc.components.get_or_insert_with(Components::new);
    add_components(components);
    for (_, item) in doc.paths.paths.iter_mut() {
        for op in operations(item) {
            finish_operation(op.0, op.1);
        }
    }
    doc.webhooks = Some(webhooks(components));
    doc
}

/// The default limits of each tier, as a Markdown table (from the rate limiter's own defaults, so
/// the document cannot disagree with them; an operator may override them).
fn tier_table() -> String {
    use strata_core::apikey::Tier;
    use strata_core::ratelimit::TierLimits;
    let n = |v: Option<u32>| v.map_or_else(|| "unlimited".to_owned(), |v| v.to_string());
    let mut t = String::from(
        "\nThe tiers' default limits (per minute, except the daily cap and the jobs running at once; the operator may \
         change them):\n\n| tier | reads | writes | generations started | daily writes | concurrent jobs |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for tier in [Tier::Sandbox, Tier::Standard, Tier::Pilot, Tier::Partner, Tier::Internal] {
        let l = TierLimits::default_for(tier);
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            tier.as_str(),
            n(l.reads_per_minute),
            n(l.writes_per_minute),
            n(l.long_running_per_minute),
            n(l.daily_writes),
            n(l.concurrent_jobs)
        ));
    }
    t
}

fn tags() -> Vec<utoipa::openapi::Tag> {
    [
        ("Meta", "Health checks, the caller's identity and this document."),
        ("Organizations", "Child organizations: one per end-customer (`org:admin`)."),
        ("API keys", "Child keys and the caller's own keys."),
        ("Credits", "Wallets, the credit ledger, allocation to children and the credit config."),
        ("Projects", "Projects: one per end-customer inside an org."),
        ("Content", "Content generation jobs, containers and scheduled posts."),
        ("Webhooks", "Webhook endpoints and their deliveries."),
        ("Logs", "The audit log and the event log."),
    ]
    .into_iter()
    .map(|(name, d)| TagBuilder::new().name(name).description(Some(d)).build())
    .collect()
}

fn operations(item: &mut PathItem) -> Vec<(HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, item.get.as_mut()),
        (HttpMethod::Post, item.post.as_mut()),
        (HttpMethod::Patch, item.patch.as_mut()),
        (HttpMethod::Delete, item.delete.as_mut()),
        (HttpMethod::Put, item.put.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

fn string_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::String))
}

fn integer_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::Integer)).minimum(Some(0))
}

/// Header and parameter names, as they appear in `components`.
mod names {
    pub const REQUEST_ID: &str = "X-Request-Id";
    pub const RATE_CLASS: &str = "X-RateLimit-Endpoint-Class";
    pub const RATE_LIMIT: &str = "X-RateLimit-Limit";
    pub const RATE_REMAINING: &str = "X-RateLimit-Remaining";
    pub const RATE_RESET: &str = "X-RateLimit-Reset";
    pub const RETRY_AFTER: &str = "Retry-After";
    pub const REPLAYED: &str = "Idempotent-Replayed";
    pub const ETAG: &str = "ETag";
    pub const ACTING_ORG: &str = "X-Layers-Organization";
    pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
}

fn add_components(c: &mut Components) {
    c.security_schemes.insert(
        BEARER.into(),
        RefOr::T(SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("lp_<env>_<keyid>_<secret>")
                .description(Some(
                    "`Authorization: Bearer lp_<live|test>_<keyid>_<secret>`. Missing, malformed, unknown, revoked or expired: \
                     401 UNAUTHENTICATED. The scopes an operation lists are the key scopes it needs (`org:admin` implies every \
                     data scope of its own org).",
                ))
                .build(),
        )),
    );
    let mut schemas = Vec::new();
    ErrorEnvelope::schemas(&mut schemas);
    schemas.push((ErrorEnvelope::name().into(), ErrorEnvelope::schema()));
    c.schemas.extend(schemas);

    let header = |schema: ObjectBuilder, d: &str| RefOr::T(HeaderBuilder::new().schema(Some(schema)).description(Some(d)).build());
    let headers = [
        (
            names::REQUEST_ID,
            header(
                string_schema().pattern(Some("^req_[0-9A-HJKMNP-TV-Z]{26}$")),
                "This request's id, repeated in an error body as `error.requestId`.",
            ),
        ),
        (
            names::RATE_CLASS,
            header(
                string_schema().enum_values(Some(["read-light", "write-light", "long-running"])),
                "The rate-limit class of the route: every GET is `read-light`, a POST that starts a job `long-running`, every other write `write-light`. Present on every answer to a request that proved a live key, refusals included (403, 404 or 422 from `X-Layers-Organization`, 409, 429, 503 KILL_SWITCH), each of which counts against the bucket like any request; never on a 401.",
            ),
        ),
        (
            names::RATE_LIMIT,
            header(
                integer_schema(),
                "Requests per minute the key's tier allows in this class; on a 429, the limit that refused (the daily write cap or the concurrent-jobs cap when it was one of those).",
            ),
        ),
        (names::RATE_REMAINING, header(integer_schema(), "Requests left in the current minute; 0 on a 429.")),
        (
            names::RATE_RESET,
            header(
                integer_schema(),
                "Seconds until the bucket is full again; on a 429, until the limit that refused frees (as `Retry-After`: a token refills, a running job ends, the UTC day turns).",
            ),
        ),
        (names::RETRY_AFTER, header(integer_schema(), "Seconds to wait before retrying.")),
        (
            names::REPLAYED,
            header(
                string_schema().enum_values(Some(["true"])),
                "`true` when this answer is the stored answer to an earlier request with the same Idempotency-Key, replayed verbatim.",
            ),
        ),
        (names::ETAG, header(string_schema(), "The representation's tag; send it as `If-None-Match` to get 304 while nothing changed.")),
    ];
    for (name, h) in headers {
        c.headers.insert(name.into(), h);
    }

    c.parameters.insert(
        names::ACTING_ORG.into(),
        RefOr::T(
            ParameterBuilder::new()
                .name(names::ACTING_ORG)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .schema(Some(
                    string_schema().pattern(Some("^(org_)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")),
                ))
                .description(Some(
                    "Act inside a direct child org (`org_<uuid>` or the bare UUID): the route runs in the child, unchanged. Honoured \
                     only for a key holding `org:admin` (ignored otherwise). Not a direct child: 404; malformed: 422. Inside an \
                     archived child, reads work and writes are 409 CONFLICT.",
                ))
                .example(Some(serde_json::json!("org_d4e5f6a7-8b9c-4d0e-9f2a-3b4c5d6e7f80")))
                .build(),
        ),
    );
    c.parameters.insert(names::IDEMPOTENCY_KEY.into(), RefOr::T(idempotency_key(false)));

    let responses = [
        ("Unauthenticated", "401 UNAUTHENTICATED: the key is missing, malformed, unknown, revoked or expired.", false),
        ("ForbiddenScope", "403 FORBIDDEN_SCOPE: the key lacks the scope the route needs (`details.scope`).", true),
        (
            "NotFound",
            "404 NOT_FOUND: no such resource, or it is not visible to the caller (another tenant's resource is never 403); also an `X-Layers-Organization` that is not a direct child.",
            true,
        ),
        (
            "Conflict",
            "409 CONFLICT (an illegal state change, or a write inside an archived org) or IDEMPOTENCY_CONFLICT (the same Idempotency-Key with another request, or while the first is still running: `details.reason: \"in_progress\"`). A CONFLICT is stored and replayed under its Idempotency-Key.",
            true,
        ),
        ("PayloadTooLarge", "413 PAYLOAD_TOO_LARGE: the body is over 1 MiB.", true),
        (
            "Validation",
            "422 VALIDATION: a bad field, id, cursor, limit, query parameter or header value; `details.field` names it (and `details.min`/`details.max` give the bounds of a number).",
            true,
        ),
        (
            "RateLimited",
            "429 RATE_LIMITED: the class's bucket is empty, the daily write cap is reached, or the concurrent-jobs cap; `X-RateLimit-*` show the limit that refused.",
            true,
        ),
        (
            "Unavailable",
            "503 KILL_SWITCH: the key was killed (`details.scope: \"key\"`), or its org is suspended or its API access revoked (`details.scope: \"organization\"`); never on whoami, which is how a client learns it; it carries the key's `X-RateLimit-*`. Or 503 SERVICE_UNAVAILABLE with `Retry-After`: the database did not answer in time or the server is shedding load; nothing was changed, and a retry with the same Idempotency-Key does the work once.",
            false,
        ),
        ("Internal", "500 INTERNAL: a bug; the body never leaks internals.", true),
    ];
    for (name, description, rated) in responses {
        let mut r = ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name(ErrorEnvelope::name()))).build())
            .build();
        r.headers.insert(names::REQUEST_ID.into(), HeaderRef::of(names::REQUEST_ID));
        if rated {
            for h in [names::RATE_CLASS, names::RATE_LIMIT, names::RATE_REMAINING, names::RATE_RESET] {
                r.headers.insert(h.into(), HeaderRef::of(h));
            }
        }
        if name == "RateLimited" || name == "Unavailable" {
            r.headers.insert(names::RETRY_AFTER.into(), HeaderRef::of(names::RETRY_AFTER));
        }
        // A CONFLICT is stored under the request's Idempotency-Key and replayed.
        if name == "Conflict" {
            r.headers.insert(names::REPLAYED.into(), HeaderRef::of(names::REPLAYED));
        }
        c.responses.insert(name.into(), RefOr::T(r));
    }
}

/// A `$ref` to a header component.
struct HeaderRef;

impl HeaderRef {
    fn of(name: &str) -> RefOr<utoipa::openapi::header::Header> {
        RefOr::Ref(Ref::new(format!("#/components/headers/{name}")))
    }
}

fn idempotency_key(required: bool) -> Parameter {
    let what = if required { "Required on this route (none: 400 IDEMPOTENCY_REQUIRED). " } else { "Optional. " };
    ParameterBuilder::new()
        .name(names::IDEMPOTENCY_KEY)
        .parameter_in(ParameterIn::Header)
        .required(if required { Required::True } else { Required::False })
        .schema(Some(string_schema().min_length(Some(1)).max_length(Some(255)).pattern(Some("^[\\x21-\\x7e]+$"))))
        .description(Some(format!(
            "{what}1–255 visible ASCII characters, scoped to the calling key, kept at least 24 h. The same key with the same \
             request (method, path, acting org, body) replays the first answer verbatim with `Idempotent-Replayed: true`; with \
             another request it is 409 IDEMPOTENCY_CONFLICT."
        )))
        .example(Some(serde_json::json!("5f0c1c9e-3b7e-4a53-9d2e-0f3f4f7b9a10")))
        .build()
}

/// Whether the operation needs a key, and the scopes it names.
fn security_of(op: &Operation) -> (bool, bool) {
    let value = serde_json::to_value(&op.security).unwrap_or_default();
    match value.as_array() {
        // No per-operation security: the global bearer requirement holds.
        None => (true, false),
        Some(list) => {
            let anonymous = list.iter().any(|r| r.as_object().is_some_and(|o| o.is_empty()));
            let scoped = list.iter().any(|r| r.get(BEARER).and_then(|s| s.as_array()).is_some_and(|s| !s.is_empty()));
            (!anonymous, scoped)
        }
    }
}

/// Adds to one operation what every route of its kind shares.
fn finish_operation(method: HttpMethod, op: &mut Operation) {
    let (authenticated, scoped) = security_of(op);
    let write = matches!(method, HttpMethod::Post | HttpMethod::Patch | HttpMethod::Delete);
    let params = op.parameters.get_or_insert_with(Vec::new);
    // A route that requires the key declares it (credit allocation); the rest get the optional one.
    let declared = params.iter_mut().find(|p| matches!(p, RefOr::T(p) if p.name == names::IDEMPOTENCY_KEY));
    match declared {
        Some(p) => *p = RefOr::T(idempotency_key(true)),
        None if write && authenticated => {
            params.push(RefOr::Ref(Ref::new(format!("#/components/parameters/{}", names::IDEMPOTENCY_KEY))));
        }
        None => {}
    }
    if authenticated {
        params.push(RefOr::Ref(Ref::new(format!("#/components/parameters/{}", names::ACTING_ORG))));
    }
    if params.is_empty() {
        op.parameters = None;
    }

    let responses = &mut op.responses.responses;
    for (status, response) in responses.iter_mut() {
        if let RefOr::T(r) = response {
            r.headers.insert(names::REQUEST_ID.into(), HeaderRef::of(names::REQUEST_ID));
            if authenticated {
                for h in [names::RATE_CLASS, names::RATE_LIMIT, names::RATE_REMAINING, names::RATE_RESET] {
                    r.headers.insert(h.into(), HeaderRef::of(h));
                }
            }
            if write && authenticated && (status.starts_with('2') || status == "402" || status == "409") {
                r.headers.insert(names::REPLAYED.into(), HeaderRef::of(names::REPLAYED));
            }
            if status == "429" || status == "503" {
                r.headers.insert(names::RETRY_AFTER.into(), HeaderRef::of(names::RETRY_AFTER));
            }
            if status.starts_with('4') || status.starts_with('5') {
                r.content
                    .entry("application/json".into())
                    .or_insert_with(|| RefOr::T(ContentBuilder::new().schema(Some(Ref::from_schema_name(ErrorEnvelope::name()))).build()));
            }
        }
    }
    let mut shared: Vec<(&str, &str)> = Vec::new();
    if authenticated {
        shared.extend([
            ("401", "Unauthenticated"),
            ("404", "NotFound"),
            ("422", "Validation"),
            ("429", "RateLimited"),
            ("500", "Internal"),
        ]);
        shared.push(("503", "Unavailable"));
        if scoped {
            shared.push(("403", "ForbiddenScope"));
        }
        if write {
            shared.extend([("409", "Conflict"), ("413", "PayloadTooLarge")]);
        }
    }
    for (status, name) in shared {
        responses.entry(status.into()).or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
    }
}

/// One entry per catalog event: the POST strata makes to a subscribed endpoint.
fn webhooks(components: &mut Components) -> Paths {
    let mut schemas = Vec::new();
    EventType::data_schemas(&mut schemas);
    components.schemas.extend(schemas);
    let mut paths = Paths::new();
    for ty in EventType::ALL {
        let body = RequestBodyBuilder::new()
            .description(Some(format!("The `{}` event. Also readable at `GET /v1/events/{{eventId}}`.", ty.as_str())))
            .content("application/json", ContentBuilder::new().schema(Some(strata_core::event_data::delivery_schema(*ty))).build())
            .required(Some(Required::True))
            .build();
        let mut op = Operation::new();
        op.summary = Some(format!("{} event", ty.as_str()));
        op.description = Some(format!(
            "{}\n\nDelivered as `POST <url>` with `X-Layers-Event-Id` (stable across retries), `X-Layers-Signature: t=<unix>,v1=<hex>` \
             (HMAC-SHA256 with the whole `whsec_…` secret over `<t>.<raw body>`; one `v1=` per active secret during a rotation) \
             and the Standard Webhooks headers `webhook-id`, `webhook-timestamp`, `webhook-signature`. A 2xx answer is delivered; \
             a timeout, network error, 5xx, 408 or 429 is retried on the ladder 0 s, 30 s, 1 m, 5 m, 15 m, 1 h, 6 h, 24 h.",
            ty.when()
        ));
        op.operation_id = Some(format!("webhook_{}", ty.as_str().replace('.', "_")));
        op.tags = Some(vec!["Webhooks".into()]);
        op.request_body = Some(RefOr::T(body));
        op.security = Some(vec![SecurityRequirement::default()]);
        op.responses.responses.insert(
            "2XX".into(),
            RefOr::T(ResponseBuilder::new().description("Received: the delivery is done. Any other answer is retried or fails.").build()),
        );
        let item = PathItemBuilder::new().operation(HttpMethod::Post, op).build();
        paths.paths.insert(ty.as_str().into(), item);
    }
    paths
}
