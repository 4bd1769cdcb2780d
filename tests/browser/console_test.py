"""The partner console, driven in Chromium against a real strata server.

Starts `strata serve` on a fresh data directory, creates a partner with the CLI, then signs in to
/console and runs the quick start through it: create a customer, mint its key, allocate (a double
click and a retry after a lost answer each move credits once), set the cap and auto-refill,
suspend, resume, archive. After each step the API's state is read back over plain HTTP. An org
named like an HTML tag must render as text. Screenshots of every page at 1280x800 and 390x844 go
to target/console-screenshots/.

Usage: console_test.py --binary target/debug/strata [--screenshots DIR]
Prints one line per check and closes with "N passed, N failed".
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
XSS_NAME = "<img src=x onerror=alert(1)>"
PARTNER_CREDITS = 100_000


class Server:
    """`strata serve` on a free port and a fresh data directory; the CLI on the same directory."""

    def __init__(self, binary):
        self.binary = os.path.abspath(binary)
        self.data_dir = tempfile.mkdtemp(prefix="strata-console-")
        self.env = dict(os.environ, STRATA_DATA_DIR=self.data_dir, RUST_LOG="warn")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--listen", "127.0.0.1:0", "--dev"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.base = None
        deadline = time.monotonic() + 60
        for line in self.proc.stdout:
            m = re.match(r"strata listening on (http://\S+)", line.strip())
            if m:
                self.base = m.group(1)
                break
            if time.monotonic() > deadline:
                break
        if not self.base:
            self.stop()
            raise RuntimeError("strata serve did not say where it listens")
        # Keep reading so the server never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def cli(self, *args):
        out = subprocess.run([self.binary, *args], env=self.env, capture_output=True, text=True, timeout=60, check=True)
        return out.stdout

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class Api:
    """Direct HTTP calls, to check what the console did."""

    def __init__(self, base, key):
        self.base, self.key = base, key

    def call(self, method, path, body=None, key=None, headers=None):
        req = urllib.request.Request(self.base + path, method=method)
        req.add_header("Authorization", f"Bearer {key or self.key}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, data, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null"), dict(resp.headers)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null"), dict(e.headers)

    def get(self, path, **kw):
        status, body, _ = self.call("GET", path, **kw)
        assert status == 200, f"GET {path}: {status} {body}"
        return body


class Checks:
    def __init__(self):
        self.passed, self.failed = 0, 0

    def ok(self, name):
        self.passed += 1
        print(f"ok   {name}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/debug/strata")
    parser.add_argument("--screenshots", default="target/console-screenshots")
    args = parser.parse_args()
    os.makedirs(args.screenshots, exist_ok=True)
    checks = Checks()
    server = Server(args.binary)
    try:
        partner = json.loads(server.cli("partners", "create", "--name", "Console Test Partner", "--tier", "partner", "--credits", str(PARTNER_CREDITS), "--json"))
        api = Api(server.base, partner["apiKey"])
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                run(browser, server, api, partner, args.screenshots, checks)
            finally:
                browser.close()
    except Exception:  # noqa: BLE001 - report any failure as a failed check, then the counts
        checks.failed += 1
        traceback.print_exc()
    finally:
        server.stop()
    print(f"console: {checks.passed} passed, {checks.failed} failed", flush=True)
    return 1 if checks.failed else 0


def watch(page, alerts, csp):
    """Records every JavaScript dialog (an alert would mean injected script ran) and CSP refusal."""
    def on_dialog(d):
        alerts.append(d.message)
        d.dismiss()

    page.on("dialog", on_dialog)
    # Chromium also logs refusals itself; this makes each one a console message we can count.
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " e => console.error(`Content Security Policy refused ${e.violatedDirective}: ${e.blockedURI}`));"
    )
    page.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text or "Refused to" in m.text else None)


def every_control_is_labelled(page):
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
              .filter(el => el.labels.length === 0 && !el.getAttribute('aria-label'))
              .map(el => el.name || el.outerHTML.slice(0, 80))"""
    )
    assert unlabelled == [], f"controls without a label: {unlabelled}"


def shoot(page, directory, name):
    page.screenshot(path=os.path.join(directory, f"{name}.png"), full_page=True)


def run(browser, server, api, partner, shots, checks):
    base = server.base
    alerts, csp = [], []
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    watch(page, alerts, csp)

    # --- The page and its headers.
    resp = page.goto(f"{base}/console")
    headers = resp.headers
    policy = headers.get("content-security-policy", "")
    for directive in ["default-src 'self'", "script-src 'self'", "connect-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"]:
        assert directive in policy, f"CSP lacks {directive}: {policy}"
    assert "unsafe-inline" not in policy
    assert headers.get("x-frame-options") == "DENY"
    assert headers.get("referrer-policy") == "no-referrer"
    assert headers.get("x-content-type-options") == "nosniff"
    checks.ok("/console answers with a strict CSP, X-Frame-Options DENY, no-referrer, nosniff")

    # --- Sign in with the partner's key (held in memory only).
    expect(page.get_by_role("heading", name="Sign in to the strata console")).to_be_visible()
    every_control_is_labelled(page)
    shoot(page, shots, "desktop-01-sign-in")
    page.get_by_label("API key").fill("lp_live_NOTAREALKEY00000_" + "x" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".error .error-message")).to_contain_text("")
    expect(page.locator(".error .request-id")).to_have_text(re.compile(r"^req_[0-9A-Z]{26}$"))
    checks.ok("a wrong key shows the envelope's message and request id")

    page.get_by_label("API key").fill(partner["apiKey"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".who-org")).to_have_text("Console Test Partner")
    expect(page.locator(".who-tier")).to_have_text("tier partner")
    expect(page.locator(".who-balance")).to_have_text("balance 100,000")
    expect(page.locator(".who-scopes")).to_contain_text("org:admin")
    stored = page.evaluate("() => [document.cookie, JSON.stringify(localStorage), JSON.stringify(sessionStorage), location.href]")
    assert all(partner["apiKey"] not in s for s in stored), f"the key leaked into {stored}"
    checks.ok("signed in: whoami shows org, tier, scopes, balance; the key is in no cookie, storage or URL")

    # --- Create a customer.
    expect(page.get_by_role("heading", name="Customers")).to_be_visible()
    shoot(page, shots, "desktop-02-customers-empty")
    page.get_by_role("button", name="New customer").click()
    dialog = page.locator("dialog")
    dialog.get_by_label("Name", exact=True).fill("Acme Coffee")
    dialog.get_by_label("External id (optional)").fill("acme-coffee")
    every_control_is_labelled(page)
    dialog.get_by_role("button", name="Create customer").click()
    expect(page.locator("h1.org-name")).to_have_text("Acme Coffee")
    child_id = re.search(r"#/customers/(org_[0-9a-f-]+)", page.url).group(1)
    listed = api.get("/v1/organizations?externalId=acme-coffee")["items"]
    assert [o["id"] for o in listed] == [child_id] and listed[0]["status"] == "active", listed
    checks.ok(f"created a customer through the console ({child_id}); the API lists it, active")

    # --- Mint its key: the secret is shown once, then gone.
    page.get_by_label("Key name").fill("acme-backend")
    page.get_by_label("projects:read", exact=True).check()
    page.get_by_label("content:write", exact=True).check()
    page.get_by_role("button", name="Mint key").click()
    secret_box = page.locator("dialog input.secret")
    expect(secret_box).to_be_visible()
    secret = secret_box.input_value()
    assert secret.startswith("lp_live_"), secret
    shoot(page, shots, "desktop-03-key-secret-once")
    status, who, _ = api.call("GET", "/v1/whoami", key=secret)
    assert status == 200 and who["organizationId"] == child_id and sorted(who["scopes"]) == ["content:write", "projects:read"], who
    page.locator("dialog").get_by_role("button", name="Close").click()
    expect(page.locator("dialog")).to_have_count(0)
    leftover = page.evaluate(
        """(s) => [...document.querySelectorAll('input, textarea')].some(i => i.value.includes(s))
                 || document.body.innerText.includes(s) || JSON.stringify(sessionStorage).includes(s)
                 || JSON.stringify(localStorage).includes(s)""",
        secret,
    )
    assert not leftover, "the secret is still on the page after closing the dialog"
    expect(page.locator("td code", has_text=secret[:len("lp_live_") + 16])).to_be_visible()
    keys = api.get(f"/v1/organizations/{child_id}/api-keys")["items"]
    assert len(keys) == 1 and keys[0]["status"] == "active"
    checks.ok("minted a key: the secret works, is shown once and is gone after the dialog closes")

    # --- Allocate with a double click: credits move once.
    page.get_by_label("Credits", exact=True).fill("5000")
    page.get_by_label("Description (optional)").fill("first month")
    page.get_by_role("button", name="Allocate", exact=True).dblclick()
    expect(page.locator(".notice", has_text="Allocated 5,000 credits")).to_be_visible()
    expect(page.locator(".wallet-balance")).to_have_text("5,000")
    assert api.get(f"/v1/organizations/{child_id}/credits")["balance"] == 5000
    assert api.get("/v1/credits")["balance"] == PARTNER_CREDITS - 5000
    allocations = api.get(f"/v1/organizations/{child_id}/credits/events?eventType=allocation")["items"]
    assert len(allocations) == 1, allocations
    checks.ok("a double-clicked allocate moved 5,000 credits once (child 5,000, partner 95,000)")

    # --- Allocate, lose the answer, submit again: the same Idempotency-Key, credits move once.
    keys_seen = []
    page.on("request", lambda r: keys_seen.append(r.headers.get("idempotency-key")) if r.url.endswith("/credits/allocate") else None)
    lost = {"done": False}

    def lose_first_answer(route):
        if not lost["done"]:
            lost["done"] = True
            route.fetch()  # the server does the work; the browser never hears back
            route.abort("failed")
        else:
            route.continue_()

    page.route("**/credits/allocate", lose_first_answer)
    page.get_by_label("Credits", exact=True).fill("1000")
    page.get_by_role("button", name="Allocate", exact=True).click()
    expect(page.locator(".error .error-code", has_text="NETWORK")).to_be_visible()
    assert api.get(f"/v1/organizations/{child_id}/credits")["balance"] == 6000
    with page.expect_response("**/credits/allocate") as replay:
        page.get_by_role("button", name="Allocate", exact=True).click()
    assert replay.value.headers.get("idempotent-replayed") == "true"
    expect(page.locator(".notice", has_text="Allocated 1,000 credits")).to_be_visible()
    page.unroute("**/credits/allocate")
    assert len(keys_seen) == 2 and keys_seen[0] == keys_seen[1] and keys_seen[0], keys_seen
    assert api.get(f"/v1/organizations/{child_id}/credits")["balance"] == 6000
    assert len(api.get(f"/v1/organizations/{child_id}/credits/events?eventType=allocation")["items"]) == 2
    checks.ok("a retry after a lost answer reused the form's Idempotency-Key and was replayed (child 6,000)")

    # --- Cap and auto-refill, with the both-or-neither rule shown before submit.
    page.get_by_label("Monthly credit cap (empty: no cap)").fill("20000")
    page.get_by_label("Refill when available drops below").fill("1000")
    expect(page.locator(".rule-broken")).to_contain_text("both a threshold and an amount")
    expect(page.get_by_role("button", name="Save cap and refill")).to_be_disabled()
    page.get_by_label("Refill amount").fill("2000")
    expect(page.locator(".rule-broken")).to_have_count(0)
    page.get_by_role("button", name="Save cap and refill").click()
    expect(page.locator(".refill-state")).to_contain_text("auto-refill on")
    config = api.get(f"/v1/organizations/{child_id}/credit-config")["config"]
    assert config == {"monthlyCreditCap": 20000, "refillThreshold": 1000, "refillAmount": 2000, "autoRefillEnabled": True}, config
    checks.ok("cap 20,000 and refill 1,000/2,000 saved; the rule showed before submit while only one was set")

    # --- The usage chart (from the usage report).
    report = api.get(f"/v1/organizations/{child_id}/credits/usage")
    assert sum(b["allocated"] for b in report["items"]) == 6000, report
    expect(page.locator(".chart canvas")).to_have_count(1)
    expect(page.locator(".usage-totals")).to_contain_text("Allocated 6,000")
    checks.ok("the usage chart draws the usage report (6,000 allocated this month)")
    every_control_is_labelled(page)
    shoot(page, shots, "desktop-04-customer")

    # --- Suspend and resume.
    page.get_by_role("button", name="Suspend").click()
    expect(page.locator(".page-head .badge")).to_have_text("suspended")
    assert api.get(f"/v1/organizations/{child_id}")["status"] == "suspended"
    status, body, _ = api.call("GET", "/v1/projects", key=secret)
    assert status == 503 and body["error"]["code"] == "KILL_SWITCH", (status, body)
    checks.ok("suspended: the API says suspended and the customer's key gets 503 KILL_SWITCH")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator(".page-head .badge")).to_have_text("active")
    assert api.get(f"/v1/organizations/{child_id}")["status"] == "active"
    assert api.call("GET", "/v1/projects", key=secret)[0] == 200
    checks.ok("resumed: active again and its key works")

    # --- An org named like an HTML tag renders as text.
    status, xss, _ = api.call("POST", "/v1/organizations", body={"name": XSS_NAME, "metadata": {"externalId": "<b>bold</b>"}})
    assert status == 201, xss
    page.goto(f"{base}/console#/customers")
    expect(page.locator("a.org-name", has_text=XSS_NAME)).to_have_text(XSS_NAME)
    expect(page.get_by_role("cell", name="<b>bold</b>")).to_be_visible()
    assert page.locator("main img").count() == 0 and page.locator("main b").count() == 0
    shoot(page, shots, "desktop-05-customers")
    page.locator("a.org-name", has_text=XSS_NAME).click()
    expect(page.locator("h1.org-name")).to_have_text(XSS_NAME)
    assert page.locator("main img").count() == 0
    assert alerts == [], f"a dialog fired: {alerts}"
    checks.ok("an org named <img src=x onerror=alert(1)> shows as those characters; no alert fired")

    # --- Search and filter.
    page.goto(f"{base}/console#/customers")
    page.get_by_label("Search name or external id").fill("acme-c")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("a.org-name")).to_have_count(1)
    expect(page.locator("a.org-name")).to_have_text("Acme Coffee")
    row = page.locator("tbody tr")
    expect(row.locator("td").nth(3)).to_have_text("6,000")
    expect(row.locator("td").nth(4)).to_have_text("6,000")
    expect(row.locator("td").nth(5)).to_have_text("0 / 20,000")
    summary = api.get("/v1/organizations?expand=summary&search=acme-c")["items"][0]["summary"]
    assert (summary["balance"], summary["available"], summary["creditConfig"]["monthlyCreditCap"]) == (6000, 6000, 20000), summary
    checks.ok("searching by an externalId prefix finds the one customer, with its balance, available and usage/cap")

    # --- Keyset paging: 27 customers are 25 on the first page and 2 on the next.
    for n in range(25):
        assert api.call("POST", "/v1/organizations", body={"name": f"Bulk customer {n:02d}"})[0] == 201
    page.get_by_label("Search name or external id").fill("")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("a.org-name")).to_have_count(25)
    expect(page.locator("a.org-name").first).to_have_text("Bulk customer 24")
    page.get_by_role("button", name="Next page").click()
    expect(page.locator("a.org-name")).to_have_text([XSS_NAME, "Acme Coffee"])
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    page.get_by_role("button", name="Previous page").click()
    expect(page.locator("a.org-name")).to_have_count(25)
    checks.ok("paging follows nextCursor: 25 customers, then the 2 oldest, and back")

    # --- Webhooks, audit log, events (the partner's own).
    page.goto(f"{base}/console#/webhooks")
    page.get_by_role("button", name="New endpoint").click()
    dlg = page.locator("dialog")
    dlg.get_by_label("URL").fill("http://127.0.0.1:9/strata-console-test")
    dlg.get_by_label("organization.created").check()
    dlg.get_by_role("button", name="Create endpoint").click()
    signing = page.locator("dialog input.secret")
    expect(signing).to_have_value(re.compile(r"^whsec_"))
    page.locator("dialog").get_by_role("button", name="Close").click()
    expect(page.locator(".endpoint-url")).to_have_text("http://127.0.0.1:9/strata-console-test")
    endpoints = api.get("/v1/webhook-endpoints")["items"]
    assert len(endpoints) == 1 and endpoints[0]["events"] == ["organization.created"], endpoints
    page.get_by_role("button", name="Send test").click()
    expect(page.locator(".notice", has_text="Test event")).to_be_visible()
    page.get_by_role("button", name="Deliveries").click()
    expect(page.locator(".deliveries td", has_text="test.ping")).to_be_visible()
    every_control_is_labelled(page)
    shoot(page, shots, "desktop-06-webhooks")
    checks.ok("webhooks: endpoint created (secret shown once), test sent, its delivery listed")

    page.goto(f"{base}/console#/audit")
    expect(page.locator("td", has_text="credits.allocated").first).to_be_visible()
    every_control_is_labelled(page)
    shoot(page, shots, "desktop-07-audit")
    page.goto(f"{base}/console#/events")
    page.get_by_label("Type").select_option("test.ping")
    page.get_by_role("button", name="Apply").click()
    want = [e["id"] for e in api.get("/v1/events?type=test.ping")["items"]]
    assert len(want) == 1, want
    expect(page.locator("tbody tr td code")).to_have_text(want)
    page.goto(f"{base}/console#/events?org={child_id}")
    page.get_by_label("Type").select_option("credits.allocated")
    page.get_by_role("button", name="Apply").click()
    want = [e["id"] for e in api.get("/v1/events?type=credits.allocated", headers={"X-Layers-Organization": child_id})["items"]]
    assert len(want) == 2, want
    expect(page.locator("tbody tr td code")).to_have_text(want)
    shoot(page, shots, "desktop-08-events")
    checks.ok("audit log lists the allocations; the events filter shows the API's events, own and the customer's")

    # --- Archive: typed-name confirmation, then what was reclaimed and revoked.
    page.goto(f"{base}/console#/customers/{child_id}")
    page.get_by_role("button", name="Archive…").click()
    confirm = page.locator("dialog").get_by_label("Type the customer’s name to confirm")
    go = page.locator("dialog").get_by_role("button", name="Archive this customer")
    confirm.fill("Acme")
    expect(go).to_be_disabled()
    confirm.fill("Acme Coffee")
    go.click()
    expect(page.locator(".reclaimed")).to_have_text("Reclaimed credits: 6,000")
    expect(page.locator(".revoked")).to_have_text("Revoked API keys: 1")
    expect(page.locator(".page-head .badge")).to_have_text("archived")
    archived = api.get(f"/v1/organizations/{child_id}")
    assert archived["status"] == "archived", archived
    assert api.call("GET", "/v1/whoami", key=secret)[0] == 401
    assert api.get("/v1/credits")["balance"] == PARTNER_CREDITS
    shoot(page, shots, "desktop-09-archived")
    checks.ok("archived after typing the name: 6,000 reclaimed, 1 key revoked, the key is 401, partner back to 100,000")

    # --- Sign out; a reload without "stay signed in" forgets the key.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to the strata console")).to_be_visible()
    page.get_by_label("API key").fill(partner["apiKey"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".who-org")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Sign in to the strata console")).to_be_visible()
    checks.ok("sign-out works, and a reload forgets a key that was not kept for the tab")

    # --- The keyboard alone: sign in, reach "New customer", open and close its dialog.
    page.keyboard.type(partner["apiKey"])  # the key field has focus on arrival
    page.keyboard.press("Enter")
    expect(page.locator(".who-org")).to_be_visible()
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent") == "New customer":
            break
    else:
        raise AssertionError("Tab never reached the New customer button")
    page.keyboard.press("Enter")
    expect(page.locator("dialog").get_by_label("Name", exact=True)).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("dialog")).to_have_count(0)
    checks.ok("keyboard only: signed in, tabbed to New customer, opened its dialog, Escape closed it")

    # --- Phone width: every page fits 390px wide.
    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    p = phone.new_page()
    watch(p, alerts, csp)
    p.goto(f"{base}/console")
    p.get_by_label("API key").fill(partner["apiKey"])
    p.get_by_label("Stay signed in in this tab (until it closes)").check()
    p.get_by_role("button", name="Sign in").click()
    expect(p.locator(".who-org")).to_be_visible()
    for name, route, ready in [
        ("customers", "#/customers", "a.org-name"),
        ("customer", f"#/customers/{child_id}", "h1.org-name"),
        ("webhooks", "#/webhooks", ".endpoint-url"),
        ("audit", "#/audit", "tbody tr"),
        ("events", "#/events", "tbody tr"),
    ]:
        p.goto(f"{base}/console{route}")
        expect(p.locator(ready).first).to_be_visible()
        width = p.evaluate("() => document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{name} is {width}px wide at phone width"
        shoot(p, shots, f"phone-{name}")
    phone.close()
    checks.ok("at 390px every page fits the width (no sideways scrolling of the page)")

    assert csp == [], f"CSP refusals: {csp}"
    assert alerts == [], f"dialogs fired: {alerts}"
    checks.ok("no Content-Security-Policy refusal and no JavaScript dialog during the whole run")
    context.close()


if __name__ == "__main__":
    sys.exit(main())
