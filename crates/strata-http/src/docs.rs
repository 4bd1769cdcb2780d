//! `GET /docs`: the human API reference. Redoc renders `/openapi.json` in the browser; its
//! standalone bundle (vendored by `scripts/vendor-docs-renderer.sh`, MIT, license beside it) is
//! built into the binary, so the page loads nothing from anywhere but this server.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::AppState;

/// Redoc's standalone bundle (an ES module exporting `init`), served at `/docs/renderer.js`.
const RENDERER: &[u8] = include_bytes!("../assets/docs/redoc.standalone.js");
/// The vendored Redoc version, as the vendoring script wrote it.
const RENDERER_VERSION: &str = include_str!("../assets/docs/VERSION");

/// Scripts only from this server, and no fetch, frame, form or base URL elsewhere. Redoc injects
/// its styles as `<style>` elements at run time, hence `'unsafe-inline'` for styles (never for
/// scripts); its icons are inline SVG or `data:` images.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The assets change only with the binary: their URLs carry a digest of the renderer, so they
/// can be cached for a year while a new renderer gets new URLs (the page itself is not cached).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `/docs`, `/docs/init.js` and `/docs/renderer.js`; no authentication.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/docs", get(page)).route("/docs/init.js", get(init_script)).route("/docs/renderer.js", get(renderer))
}

struct Assets {
    /// Hex digest prefix of the renderer: the `?v=` of the asset URLs and the renderer's ETag.
    tag: String,
    page: String,
    init: String,
}

static ASSETS: LazyLock<Assets> = LazyLock::new(|| {
    let digest = Sha256::digest(RENDERER);
    let tag: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let version = RENDERER_VERSION.trim();
    let page = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="Redoc {version}">
<title>strata API reference</title>
<script type="module" src="/docs/init.js?v={tag}"></script>
</head>
<body>
<noscript>This reference needs JavaScript. The API description it renders is at <a href="/openapi.json">/openapi.json</a>.</noscript>
<div id="reference"></div>
</body>
</html>
"#
    );
    // Telemetry is on by default in Redoc 3: switched off here, so the page sends nothing out.
    let init = format!(
        "import {{ init }} from \"/docs/renderer.js?v={tag}\";\n\
         init(\"/openapi.json\", {{ disableTelemetry: true }}, document.getElementById(\"reference\"));\n"
    );
    Assets { tag, page, init }
});

/// `GET /docs`: the HTML page (`text/html`) that loads the renderer and points it at
/// `/openapi.json`, under a strict Content-Security-Policy.
async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        ASSETS.page.as_str(),
    )
        .into_response()
}

/// `GET /docs/init.js`: the module that starts Redoc with telemetry off.
async fn init_script() -> Response {
    javascript(ASSETS.init.as_bytes())
}

/// `GET /docs/renderer.js`: the embedded Redoc bundle; `304` when `If-None-Match` names it.
async fn renderer(headers: HeaderMap) -> Response {
    let etag = format!("\"{}\"", ASSETS.tag);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if matches { StatusCode::NOT_MODIFIED.into_response() } else { javascript(RENDERER) };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

fn javascript(body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, IMMUTABLE),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
