//! `GET /docs`: the API reference page and its two assets, served by the binary itself with no
//! authentication; the page is locked to this server by its Content-Security-Policy. (That it
//! renders, offline, is checked in headless Chromium by `.ci/contract`.)

use crate::helpers::TestApp;

/// The `?v=` tag the page gives an asset URL, e.g. `/docs/assets/elements.js?v=0123abcd…`.
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
    assert!(html.contains(r#"<elements-api apiDescriptionUrl="/openapi.json""#), "{html}");
    // Both assets carry the same digest tag.
    let tag = tag_after(&html, r#"src="/docs/assets/elements.js?v="#);
    assert_eq!(tag.len(), 16);
    assert_eq!(tag_after(&html, r#"href="/docs/assets/elements.css?v="#), tag);
}

#[tokio::test]
async fn the_assets_are_the_vendored_renderer_cached_for_a_year() {
    let app = TestApp::spawn().await;
    let vendored: [(&str, &str, &[u8]); 2] = [
        (
            "/docs/assets/elements.js",
            "text/javascript; charset=utf-8",
            include_bytes!("../../../strata-http/assets/docs/web-components.min.js"),
        ),
        ("/docs/assets/elements.css", "text/css; charset=utf-8", include_bytes!("../../../strata-http/assets/docs/styles.min.css")),
    ];
    for (path, content_type, bytes) in vendored {
        let r = app.get(path).send().await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(content_type));
        assert_eq!(r.header("cache-control"), Some("public, max-age=31536000, immutable"));
        assert_eq!(r.raw.len(), bytes.len(), "{path}");
        assert!(r.raw == bytes, "{path}: served bytes differ from the vendored file");

        let etag = r.header("etag").expect("an ETag").to_owned();
        let again = app.get(path).header("If-None-Match", &etag).send().await;
        assert_eq!(again.status, 304, "{path}");
        assert!(again.raw.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        let other = app.get(path).header("If-None-Match", "\"something-else\"").send().await;
        assert_eq!(other.status, 200, "{path}");
    }
}

#[tokio::test]
async fn an_unknown_asset_is_422_naming_the_file_parameter() {
    let app = TestApp::spawn().await;
    let r = app.get("/docs/assets/elements.map").send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["field"], "file");
}

/// The pages of docs/ made from the code (`strata docs <page>`) are committed as the generator
/// makes them now: a route, flag or event changed without regenerating them fails here, naming
/// the command to run.
#[test]
fn the_generated_docs_pages_are_current() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for page in strata::docs::Page::ALL {
        let regenerate = page.command();
        let path = root.join(page.path());
        let committed =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {} ({e}); make it with `{regenerate}`", page.path()));
        let generated = page.render();
        if let Some((n, (want, got))) = generated.lines().zip(committed.lines()).enumerate().find(|(_, (a, b))| a != b) {
            panic!("{} is stale: line {} is {got:?} there but the code makes {want:?}. Regenerate it: `{regenerate}`", page.path(), n + 1);
        }
        assert!(generated == committed, "{} is stale (its length differs). Regenerate it: `{regenerate}`", page.path());
        // The published pages stand on their own: no pointer into the contract a user's clone lacks.
        assert!(!committed.contains("CONTRACT") && !committed.contains("/work/"), "{} points outside the repository", page.path());
    }
}
