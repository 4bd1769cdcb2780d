"""/docs renders offline: headless Chromium (Debian's) loads the page from a real server with the
network limited to that server. Every request to another host is aborted and counted, and one is
enough to fail. The reference must list every operation of the spec it is pointed at (each one's
summary, from /openapi.json, shows in the sidebar once its tag's group is opened), break no CSP
rule and throw no script error. A screenshot is kept at target/docs-screenshot.png."""

import json
import sys
import urllib.request
from urllib.parse import urlsplit

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from server import ROOT, Server

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium itself phones home at start: not the page's
# requests, and refused on a closed network anyway.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOT = ROOT / "target" / "docs-screenshot.png"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def operations_by_tag(spec: dict) -> dict[str, list[str]]:
    """Operation summaries by their first tag ("" for untagged ones, listed at the top level)."""
    groups: dict[str, list[str]] = {}
    for item in spec.get("paths", {}).values():
        for method, op in item.items():
            if method in HTTP_METHODS and op.get("summary"):
                groups.setdefault((op.get("tags") or [""])[0], []).append(op["summary"])
    return groups


def main() -> int:
    elsewhere: list[str] = []
    problems: list[str] = []
    with Server("docs") as srv:
        with urllib.request.urlopen(srv.base_url + "/openapi.json", timeout=10) as r:
            spec = json.load(r)
        groups = operations_by_tag(spec)
        summaries = [s for group in groups.values() for s in group]
        if not summaries:
            print("FAIL: /openapi.json has no operation with a summary to look for")
            return 1
        server = urlsplit(srv.base_url).netloc

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1400, "height": 900})

            def only_the_server(route):
                url = urlsplit(route.request.url)
                if url.scheme in ("http", "https") and url.netloc == server:
                    route.continue_()
                else:
                    elsewhere.append(route.request.url)
                    route.abort()

            context.route("**/*", only_the_server)
            page = context.new_page()
            page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
            # Errors only: React Router's deprecation warnings are not the page's fault. A CSP
            # violation (an attempt the route handler never sees) is logged as an error.
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
            page.goto(srv.base_url + "/docs", wait_until="networkidle", timeout=60_000)
            missing: list[str] = []
            try:
                # The sidebar is there once the first group (or untagged operation) is.
                first_tag, first_members = next(iter(groups.items()))
                page.get_by_title(first_tag or first_members[0], exact=True).first.wait_for(timeout=60_000)
                for tag, members in groups.items():
                    if tag and not page.get_by_title(members[0], exact=True).first.is_visible():
                        page.get_by_title(tag, exact=True).first.click()
                for summary in summaries:
                    item = page.get_by_title(summary, exact=True).first
                    try:
                        item.wait_for(state="visible", timeout=2_000)
                    except PlaywrightTimeout:
                        missing.append(summary)
            except PlaywrightTimeout as e:
                problems.append(f"the reference did not render: {e}")
                missing = summaries
            # Opening the groups scrolled the sidebar down: show it from the top.
            page.evaluate("document.querySelectorAll('.sl-overflow-y-auto').forEach(e => { e.scrollTop = 0; })")
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
            browser.close()

    ok = not (elsewhere or problems or missing)
    if elsewhere:
        print(f"FAIL: /docs tried {len(elsewhere)} request(s) beyond the server:")
        for url in elsewhere:
            print(f"  {url}")
    if problems:
        print("FAIL: the page reported errors:")
        for problem in problems:
            print(f"  {problem}")
    if missing:
        print(f"FAIL: {len(missing)} of {len(summaries)} operations not listed, e.g. {missing[:5]}")
    print(
        f"/docs: {len(summaries) - len(missing)} of {len(summaries)} operations listed in "
        f"{len(groups)} group(s), {len(elsewhere)} request(s) beyond the server, "
        f"screenshot {SCREENSHOT.relative_to(ROOT)}: {'ok' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
