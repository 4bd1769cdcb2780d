//! `GET /docs`: the human API reference. Stoplight Elements (its `<elements-api>` web component)
//! renders `/openapi.json` in the browser; its script and stylesheet (vendored by
//! `scripts/vendor-docs-renderer.sh`, Apache-2.0, licenses beside them) are built into the binary,
//! so the page loads nothing from anywhere but this server.
//! Elements was chosen because it fetches nothing on its own: Redoc (2.5 and 3.0) loads its footer
//! logo from a CDN whatever the options, and Scalar has fonts, a proxy and more to switch off.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use strata_core::error::CoreError;
use utoipa::ToSchema;

use crate::error::HttpError;

const SCRIPT: &[u8] = include_bytes!("../assets/docs/web-components.min.js");
const STYLES: &[u8] = include_bytes!("../assets/docs/styles.min.css");
/// `@stoplight/elements@<version>`, as the vendoring script wrote it.
const RENDERER: &str = include_str!("../assets/docs/VERSION");

/// Scripts only from this server, and no fetch, image, font, frame, form or base URL from
/// anywhere else. Elements sets inline styles at run time, hence `'unsafe-inline'` for styles
/// (never for scripts).
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The assets change only with the binary and their URLs carry a digest of them, so they can be
/// cached for a year while a new renderer gets new URLs (the page itself is revalidated).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

struct Page {
    /// Hex digest prefix of the script and stylesheet: the assets' `?v=` and their ETag.
    tag: String,
    html: String,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    let mut digest = Sha256::new();
    digest.update(SCRIPT);
    digest.update(STYLES);
    let tag: String = digest.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect();
    let renderer = RENDERER.trim();
    // `router="hash"`: the reference's own links stay on this one URL.
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="{renderer}">
<title>strata API reference</title>
<link rel="stylesheet" href="/docs/assets/elements.css?v={tag}">
<style>html, body {{ height: 100%; margin: 0; }}</style>
<script src="/docs/assets/elements.js?v={tag}"></script>
</head>
<body>
<noscript>This reference needs JavaScript. The API description it renders is at <a href="/openapi.json">/openapi.json</a>.</noscript>
<elements-api apiDescriptionUrl="/openapi.json" router="hash" layout="sidebar"></elements-api>
</body>
</html>
"#
    );
    Page { tag, html }
});

/// API reference.
///
/// This API's reference, for a browser: an HTML page that renders `/openapi.json` with a
/// renderer served by this server, under a Content-Security-Policy that lets it load nothing from
/// anywhere else. No key needed.
#[utoipa::path(get, path = "/docs", tag = "Meta", operation_id = "apiReference", security(()),
    responses((status = 200, description = "The reference page.", content_type = "text/html", body = String,
        headers(("Content-Security-Policy" = String, description = "Scripts, styles, images, fonts and requests from this server only.")))))]
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE.html.as_str(),
    )
        .into_response()
}

/// The reference page's two assets.
#[derive(ToSchema)]
#[schema(as = DocsAsset)]
#[expect(dead_code, reason = "describes the `file` path parameter in the OpenAPI document only")]
enum Asset {
    #[schema(rename = "elements.js")]
    Script,
    #[schema(rename = "elements.css")]
    Styles,
}

/// API reference asset.
///
/// The script or stylesheet of the reference page's renderer (Stoplight Elements), cached for a
/// year: the page links them with a `v` that changes with their content. No key needed.
#[utoipa::path(get, path = "/docs/assets/{file}", tag = "Meta", operation_id = "apiReferenceAsset", security(()),
    params(
        ("file" = inline(Asset), Path, description = "`elements.js` or `elements.css`."),
        ("v" = Option<String>, Query, description = "The page's cache-busting tag; any value serves the same file."),
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` of a copy already held: 304 if it is current."),
    ),
    responses(
        (status = 200, description = "The file.", headers(("ETag" = String, description = "Changes with the file.")),
            content((String = "text/javascript"), (String = "text/css"))),
        (status = 304, description = "The held copy is current.", headers(("ETag" = String, description = "Changes with the file."))),
        (status = 422, description = "`file` is neither of the two: VALIDATION naming `file`."),
    ))]
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let (content_type, body): (&str, &'static [u8]) = match file.as_str() {
        "elements.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "elements.css" => ("text/css; charset=utf-8", STYLES),
        // Like a malformed id, a name outside the two is 422 naming the parameter.
        _ => return HttpError(CoreError::validation("file", "must be elements.js or elements.css")).into_response(),
    };
    let etag = format!("\"{}\"", PAGE.tag);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if matches { StatusCode::NOT_MODIFIED.into_response() } else { body.into_response() };
    let h = resp.headers_mut();
    if !matches {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}
