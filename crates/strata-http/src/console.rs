//! The partner console at `/console`: static HTML, CSS and ES modules compiled into the binary,
//! served with a strict Content-Security-Policy. The console signs in with an API key and calls
//! only the public `/v1` API from the browser; this module serves files and nothing else.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use strata_core::error::CoreError;

use crate::AppState;
use crate::error::HttpError;

/// Every file under `console/`, by its path below `/console/`. A test checks that the directory
/// and this table agree.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", HTML, include_bytes!("../console/index.html")),
    ("console.css", CSS, include_bytes!("../console/console.css")),
    ("js/api.js", JS, include_bytes!("../console/js/api.js")),
    ("js/app.js", JS, include_bytes!("../console/js/app.js")),
    ("js/customer.js", JS, include_bytes!("../console/js/customer.js")),
    ("js/customer_keys.js", JS, include_bytes!("../console/js/customer_keys.js")),
    ("js/customers.js", JS, include_bytes!("../console/js/customers.js")),
    ("js/dom.js", JS, include_bytes!("../console/js/dom.js")),
    ("js/logs.js", JS, include_bytes!("../console/js/logs.js")),
    ("js/usage.js", JS, include_bytes!("../console/js/usage.js")),
    ("js/webhooks.js", JS, include_bytes!("../console/js/webhooks.js")),
    ("vendor/uplot/LICENSE", TEXT, include_bytes!("../console/vendor/uplot/LICENSE")),
    ("vendor/uplot/README.md", TEXT, include_bytes!("../console/vendor/uplot/README.md")),
    ("vendor/uplot/uPlot.esm.js", JS, include_bytes!("../console/vendor/uplot/uPlot.esm.js")),
    ("vendor/uplot/uPlot.min.css", CSS, include_bytes!("../console/vendor/uplot/uPlot.min.css")),
];

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Scripts, styles and fetches only from this origin; no inline script or style, no framing, no
/// `<base>`, forms post nowhere else.
const CSP: &str = "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `GET /console`, `GET /console/` (the page) and `GET /console/<asset>`; an unknown asset is the
/// usual 404 envelope.
pub fn routes() -> Router<AppState> {
    Router::new().route("/console", get(index)).route("/console/", get(index)).route("/console/{*path}", get(asset))
}

async fn index() -> Response {
    serve("index.html").unwrap_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn asset(Path(path): Path<String>) -> Result<Response, HttpError> {
    serve(&path).ok_or_else(|| HttpError(CoreError::not_found("console asset")))
}

fn serve(path: &str) -> Option<Response> {
    let (_, content_type, body) = ASSETS.iter().find(|(p, _, _)| *p == path)?;
    let mut resp = (*body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on every load, so a new binary's console is never mixed with an old one's.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    Some(resp)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::ASSETS;

    fn files_under(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("console directory") {
            let path: PathBuf = entry.expect("entry").path();
            if path.is_dir() {
                files_under(&path, root, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
                out.push(rel);
            }
        }
    }

    #[test]
    fn every_file_in_the_console_directory_is_served_and_nothing_else() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut on_disk = Vec::new();
        files_under(&root, &root, &mut on_disk);
        on_disk.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|(p, _, _)| (*p).to_owned()).collect();
        served.sort();
        assert_eq!(on_disk, served);
    }
}
