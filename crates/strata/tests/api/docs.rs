//! `GET /docs`: the API reference page and its two scripts, served by the binary itself with no
//! authentication; the page is locked to this server by its Content-Security-Policy. (That it
//! renders, offline, is checked in headless Chromium by `.ci/contract`.)

use crate::helpers::TestApp;

/// The `?v=` tag the page gives a script URL, e.g. `/docs/init.js?v=0123abcd…`.
fn tag_after<'a>(text: &'a str, url: &str) -> &'a str {
    let start = text.find(url).unwrap_or_else(|| panic!("{url} not in {text}")) + url.len();
    let tag = &text[start..];
    &tag[..tag.find('"').expect("closing quote")]
}

#[tokio::test]
async fn the_docs_page_needs_no_key_and_allows_nothing_from_elsewhere() {
    let app = TestApp::spawn().await;
    let page = app.get("/docs").send().await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert!(page.header("x-request-id").is_some());
    let csp = page.header("content-security-policy").expect("a CSP on /docs");
    for directive in ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
        assert!(csp.split(';').any(|d| d.trim() == directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("http"), "the CSP names no other origin: {csp}");
    let html = String::from_utf8(page.raw).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"), "the page links nowhere else: {html}");
    assert!(html.contains(r#"<div id="reference">"#));
    assert!(!tag_after(&html, r#"src="/docs/init.js?v="#).is_empty());
}

#[tokio::test]
async fn the_start_script_points_redoc_at_the_spec_with_telemetry_off() {
    let app = TestApp::spawn().await;
    let html = String::from_utf8(app.get("/docs").send().await.raw).unwrap();
    let init = app.get(&format!("/docs/init.js?v={}", tag_after(&html, r#"src="/docs/init.js?v="#))).send().await;
    assert_eq!(init.status, 200);
    assert_eq!(init.header("content-type"), Some("text/javascript; charset=utf-8"));
    let script = String::from_utf8(init.raw).unwrap();
    assert!(script.contains(r#"init("/openapi.json", { disableTelemetry: true }"#), "{script}");
    // The start script imports the renderer under the same tag the page gave it.
    assert_eq!(tag_after(&script, "/docs/renderer.js?v="), tag_after(&html, r#"src="/docs/init.js?v="#));
}

#[tokio::test]
async fn the_renderer_is_the_vendored_redoc_cached_for_a_year() {
    let app = TestApp::spawn().await;
    let js = app.get("/docs/renderer.js").send().await;
    assert_eq!(js.status, 200);
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(js.header("cache-control"), Some("public, max-age=31536000, immutable"));
    let vendored = include_bytes!("../../../strata-http/assets/docs/redoc.standalone.js");
    assert_eq!(js.raw.len(), vendored.len());
    assert!(js.raw == vendored.as_slice(), "served bytes differ from the vendored bundle");
    let version = include_str!("../../../strata-http/assets/docs/VERSION").trim();
    assert!(String::from_utf8_lossy(&js.raw[..400]).contains(&format!("Version: {version}")));

    let etag = js.header("etag").expect("an ETag").to_owned();
    let again = app.get("/docs/renderer.js").header("If-None-Match", &etag).send().await;
    assert_eq!(again.status, 304);
    assert!(again.raw.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let other = app.get("/docs/renderer.js").header("If-None-Match", "\"something-else\"").send().await;
    assert_eq!(other.status, 200);
}
