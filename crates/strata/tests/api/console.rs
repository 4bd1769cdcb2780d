//! `/console`: the partner console's files, served without a key, each with the security headers
//! (the browser test in tests/browser/ drives the console itself).

use crate::helpers::TestApp;

const CSP: &str = "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

#[tokio::test]
async fn the_console_page_and_its_assets_carry_the_security_headers() {
    let app = TestApp::spawn().await;
    for (path, content_type) in [
        ("/console", "text/html; charset=utf-8"),
        ("/console/", "text/html; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
        ("/console/js/app.js", "text/javascript; charset=utf-8"),
        ("/console/vendor/uplot/uPlot.esm.js", "text/javascript; charset=utf-8"),
    ] {
        let r = app.get(path).send().await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(content_type), "{path}");
        assert_eq!(r.header("content-security-policy"), Some(CSP), "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert!(!r.raw.is_empty(), "{path}");
    }
}

#[tokio::test]
async fn the_console_page_has_no_inline_script_or_style() {
    let app = TestApp::spawn().await;
    let html = String::from_utf8(app.get("/console").send().await.raw).unwrap();
    assert!(html.contains(r#"<script type="module" src="/console/js/app.js"></script>"#));
    for inline in ["<script>", "<style", "style=", "onload=", "onclick="] {
        assert!(!html.contains(inline), "inline {inline:?} in the console page");
    }
}

#[tokio::test]
async fn an_unknown_console_file_is_the_404_envelope() {
    let app = TestApp::spawn().await;
    for path in ["/console/nope.js", "/console/vendor/uplot", "/console/vendor/"] {
        app.get(path).send().await.assert_error(404, "NOT_FOUND");
    }
}
