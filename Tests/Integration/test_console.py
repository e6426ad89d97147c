"""The trust console (`/ui/`), driven in a real browser: headless Chromium (Debian `chromium` + `chromium-driver`)
through Selenium, trusting Sigil's root through its own NSS database (certutil), as an operator's browser would.
Screenshots of every page go to test-artifacts/console/ (not committed). Also `sigil inspect --server` and the
console's hostile cases (asset paths, query strings, forged cookies, rate limits)."""
from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess

import pytest
import requests

from sigil_harness import REPO_ROOT, dev_token, python_csr, assert_issued, audit_records, wait_until
from sigil_harness.ledger import LEDGER
from trust_support import admin

ARTIFACTS = REPO_ROOT / "test-artifacts" / "console"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SHOP = "spiffe://cluster.local/ns/shop/sa/"


@pytest.fixture(scope="module")
def server(module_servers, tmp_path_factory):
    return module_servers(tmp_path_factory.mktemp("console") / "pki")


def base(server) -> str:
    """The console's origin, by the name on the server's certificate."""
    return server.url.replace("127.0.0.1", "localhost")


def get(server, path: str, **kwargs) -> requests.Response:
    kwargs.setdefault("verify", str(server.bundle))
    kwargs.setdefault("allow_redirects", False)
    kwargs.setdefault("timeout", 30)
    return requests.get(base(server) + path, **kwargs)


def login_url(sigil, server, *args: str) -> str:
    result = admin(sigil, server, "console-login", *args)
    assert result.returncode == 0, result
    url = result.stdout.strip()
    assert re.fullmatch(re.escape(base(server)) + r"/ui/login#token=[A-Za-z0-9_-]{43}", url), url
    return url


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.skip("no chromium / chromedriver (Debian packages chromium, chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    home = tmp_path_factory.mktemp("chromium-home")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    for args in (["-N", "--empty-password"], ["-A", "-t", "C,,", "-n", "sigil-root", "-i", str(server.bundle)]):
        subprocess.run(["certutil", "-d", f"sql:{nssdb}", *args], check=True, capture_output=True)
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                     "--disable-gpu", "--no-first-run", "--disable-background-networking",
                     f"--user-data-dir={home / 'profile'}"):
        options.add_argument(argument)
    service = Service("/usr/bin/chromedriver", env={**os.environ, "HOME": str(home)})
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def open_page(browser, server, path: str, shot: str | None = None):
    browser.get(base(server) + path)
    wait_until(lambda: browser.execute_script("return document.readyState") == "complete", 15, f"{path} to load")
    LEDGER.output(f"console page {path}", lambda source=browser.page_source: source)
    if shot:
        browser.save_screenshot(str(ARTIFACTS / f"{shot}.png"))
    return browser


def sign_in(sigil, server, browser) -> None:
    browser.get(login_url(sigil, server))
    wait_until(lambda: browser.current_url.endswith("/ui/workloads"), 15, "the login exchange to land on workloads")


def authorities(server) -> list[dict]:
    return get(server, "/v1/authorities").json()["authorities"]


def chain_states(browser) -> dict[str, str]:
    return {node.get_attribute("data-authority-id"): node.get_attribute("data-state")
            for node in browser.find_elements("css selector", "li.authority")}


# --- public pages ---------------------------------------------------------------------------------------------


def test_the_trust_chain_shows_the_authorities_before_and_after_a_taint_old_rotation(sigil, server, browser):
    open_page(browser, server, "/ui/chain", "chain")
    assert chain_states(browser) == {a["id"]: a["state"] for a in authorities(server)}
    old = next(a["id"] for a in authorities(server) if a["role"] == "intermediate" and a["state"] == "active")
    # The intermediate sits under its root in the tree.
    root = browser.find_element("css selector", "ul.tree > li.authority[data-role=root]")
    assert root.find_element("css selector", f"li.authority[data-authority-id='{old}']")
    result = admin(sigil, server, "rotate", "intermediate", "--taint-old", "--reason", "console test")
    assert result.returncode == 0, result
    open_page(browser, server, "/ui/chain", "chain-after-taint")
    states = chain_states(browser)
    assert states == {a["id"]: a["state"] for a in authorities(server)}
    assert states[old] == "tainted"
    assert [i for i, s in states.items() if s == "active" and i.startswith("intermediate-")] != [old]
    badge = browser.find_element("css selector", f"li[data-authority-id='{old}'] .badge.state-tainted")
    assert badge.text == "tainted"


def test_the_timeline_has_one_bar_per_authority_at_the_planner_s_times(server, browser):
    open_page(browser, server, "/ui/timeline", "timeline")
    bars = {g.get_attribute("data-authority"): g for g in browser.find_elements("css selector", "svg.timeline g.bar")}
    expected = {a["id"]: a for a in authorities(server)}
    assert set(bars) == set(expected)
    parse = lambda text: datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    for authority_id, authority in expected.items():
        start, end = parse(authority["not_before"]), parse(authority["not_after"])
        life = end - start
        for attribute, remaining in (("data-prepare-at", 1 / 2), ("data-activate-at", 1 / 6)):
            planned = end - life * remaining  # SPIRE's thresholds, the planner's defaults
            shown = parse(bars[authority_id].get_attribute(attribute))
            assert abs((shown - planned).total_seconds()) <= 1, (authority_id, attribute, shown, planned)
    # The tainted intermediate of the previous test carries its taint event; hovering shows exact times.
    events = browser.find_elements("css selector", "svg.timeline circle.event[data-event=taint]")
    assert events and "taint 20" in events[0].find_element("css selector", "title").get_attribute("textContent")


# --- operator pages --------------------------------------------------------------------------------------------


def test_operator_pages_redirect_to_sign_in_without_a_session(server, browser):
    browser.delete_all_cookies()
    for page in ("workloads", "activity", "audit"):
        open_page(browser, server, f"/ui/{page}")
        assert browser.current_url == base(server) + "/ui/login", page
        assert "sigil admin console-login" in browser.find_element("css selector", "main").text
    assert get(server, "/ui/audit/export").status_code == 303


def test_a_login_url_works_once(sigil, server, browser, tmp_path):
    browser.delete_all_cookies()
    url = login_url(sigil, server, "--reason", "browser test")
    browser.get(url)
    wait_until(lambda: browser.current_url.endswith("/ui/workloads"), 15, "the exchange to land on workloads")
    assert "token" not in browser.current_url
    cookie = browser.get_cookie("sigil_console")
    assert cookie and cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/ui"
    lifetime = cookie["expiry"] - datetime.datetime.now(datetime.timezone.utc).timestamp()
    assert 8 * 3600 - 120 < lifetime <= 8 * 3600
    # The same URL again, in a browser without the session: refused.
    browser.delete_all_cookies()
    browser.get(url)
    wait_until(lambda: "already used" in browser.find_element("id", "login-status").text, 15, "the refusal")
    assert browser.get_cookie("sigil_console") is None
    open_page(browser, server, "/ui/workloads")
    assert browser.current_url.endswith("/ui/login")


def test_the_workloads_page_counts_the_certificates_issued(sigil, server, browser):
    token_a = dev_token(sigil, server.data_dir, "shop", "cart")
    token_b = dev_token(sigil, server.data_dir, "shop", "pay")
    for token, identity in ((token_a, "cart"), (token_a, "cart"), (token_b, "pay")):
        assert_issued(server.post_csr(python_csr(spiffe_id=SHOP + identity)[0], token), SHOP + identity)
    browser.delete_all_cookies()
    sign_in(sigil, server, browser)
    open_page(browser, server, "/ui/workloads", "workloads")
    namespaces = {row.get_attribute("data-namespace"): int(row.get_attribute("data-live"))
                  for row in browser.find_elements("css selector", "tr[data-namespace]")}
    total = int(browser.find_element("css selector", "[data-live-total]").get_attribute("data-live-total"))
    assert namespaces["shop"] == 3 and total == sum(namespaces.values()) >= 3
    browser.find_element("css selector", "tr[data-namespace=shop] a").click()
    wait_until(lambda: browser.current_url.endswith("/ui/workloads?namespace=shop"), 15, "the namespace page")
    browser.save_screenshot(str(ARTIFACTS / "workloads-namespace.png"))
    rows = {row.get_attribute("data-identity"): int(row.get_attribute("data-live"))
            for row in browser.find_elements("css selector", "tr[data-identity]")}
    assert rows == {SHOP + "cart": 2, SHOP + "pay": 1}
    buckets = {int(b.get_attribute("data-within-minutes")): int(b.find_element("css selector", ".count").text)
               for b in browser.find_elements("css selector", ".bucket")}
    # Default lifetime 1 h: nothing expires within 5 or 15 minutes, everything within the hour.
    assert buckets == {5: 0, 15: 0, 60: total}


def test_activity_and_audit_show_the_store_s_records(sigil, server, browser):
    refused = server.post_csr(python_csr()[0], "not-a-token")
    assert refused.status_code == 401
    sign_in(sigil, server, browser)
    open_page(browser, server, "/ui/activity", "activity")
    summary = browser.find_element("css selector", "p.summary[data-issued]")
    assert int(summary.get_attribute("data-issued")) >= 3 and int(summary.get_attribute("data-denied")) >= 1
    assert browser.find_element("css selector", "tr[data-code=token_invalid]")
    open_page(browser, server, "/ui/audit?action=console_login", "audit")
    assert browser.find_elements("css selector", "tr[data-action=console_login]")
    assert not browser.find_elements("css selector", "tr[data-action]:not([data-action=console_login])")
    wait_until(lambda: open_page(browser, server, "/ui/audit").find_element(
        "css selector", ".verification").get_attribute("data-verified") == "true" and "OK" in browser.find_element(
        "css selector", ".verification").text, 30, "the audit verification status")


def test_login_logout_and_export_are_audited(sigil, server, browser):
    browser.delete_all_cookies()
    sign_in(sigil, server, browser)
    session = {"sigil_console": browser.get_cookie("sigil_console")["value"]}
    export = get(server, "/ui/audit/export?action=issue", cookies=session)
    assert export.status_code == 200 and export.headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert lines and all(line["action"] == "issue" for line in lines)
    open_page(browser, server, "/ui/workloads")
    browser.find_element("css selector", "form.logout button").click()
    wait_until(lambda: browser.current_url.endswith("/ui/chain"), 15, "logout to land on the chain")
    assert browser.get_cookie("sigil_console") is None
    assert get(server, "/ui/workloads", cookies=session).status_code == 303, "the session outlived its logout"
    actions = [r["action"] for r in audit_records(sigil, "--data-dir", server.data_dir)]
    for action in ("admin_console_login", "console_login", "console_export", "console_logout"):
        assert action in actions, action
    exported = [r for r in audit_records(sigil, "--data-dir", server.data_dir) if r["action"] == "console_export"]
    assert exported[-1]["actor"].startswith("admin:uid=") and "action=issue" in exported[-1]["reason"]


# --- what every page must (not) hold ----------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["chain", "timeline", "workloads", "activity", "audit", "login"])
def test_every_page_has_the_strict_headers_and_no_inline_script(sigil, server, browser, page):
    if page in ("workloads", "activity", "audit"):
        sign_in(sigil, server, browser)
    response = get(server, f"/ui/{page}", cookies={"sigil_console": (browser.get_cookie("sigil_console") or {})
                                                   .get("value", "")})
    assert response.status_code == 200, response.status_code
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    open_page(browser, server, f"/ui/{page}")
    inline = browser.execute_script("""
        const inline = [...document.scripts].filter((s) => !s.src).length;
        const handlers = [...document.querySelectorAll("*")].filter(
            (e) => [...e.attributes].some((a) => a.name.startsWith("on"))).length;
        return inline + handlers;""")
    assert inline == 0
    # Every resource the page loaded came from this server.
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map((r) => new URL(r.name).origin);")
    assert set(origins) <= {base(server)}, origins
    source = browser.page_source
    assert "PRIVATE KEY" not in source and not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ", source)


def test_assets_are_served_by_name_only(server):
    assert get(server, "/ui/assets/console.css").headers["Content-Type"].startswith("text/css")
    for path in ("/ui/assets/../../etc/passwd", "/ui/assets/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                 "/ui/assets/..%2fconsole.css", "/ui/assets/console.css%00.png", "/ui/assets/", "/ui/assets/.",
                 "/ui/assets/%2fetc%2fpasswd"):
        response = get(server, path)
        assert response.status_code in (400, 404), (path, response.status_code)
        assert "root:" not in response.text


def test_oversized_query_strings_and_forged_cookies_are_refused(server):
    response = get(server, "/ui/audit?identity=" + "a" * 3000)
    assert response.status_code == 400 and response.json()["code"] == "bad_request"
    for forged in ("forged", "A" * 43, "x" * 8000, "\u00e9t\u00e9"):
        response = get(server, "/ui/audit", cookies={"sigil_console": forged})
        assert response.status_code in (303, 400, 431), response.status_code
        if response.status_code == 303:
            assert response.headers["Location"] == "/ui/login"
    assert get(server, "/ui/audit?since=yesterday", cookies={"sigil_console": "forged"}).status_code == 303


def test_a_login_body_that_is_not_a_token_is_refused_and_audited(sigil, server):
    for body, content_type in (("{}", "application/json"), ('{"token": "nope"}', "application/json"),
                               ("token=x", "application/x-www-form-urlencoded"), ("x" * 4096, "application/json")):
        response = requests.post(base(server) + "/ui/session", data=body, headers={"Content-Type": content_type},
                                 verify=str(server.bundle), timeout=30)
        assert 400 <= response.status_code < 500, (body[:20], response.status_code)
        assert "Set-Cookie" not in response.headers
    denials = [r for r in audit_records(sigil, "--data-dir", server.data_dir) if r["action"] == "deny"]
    assert any("console login" in (r.get("reason") or "") for r in denials)


def test_the_console_obeys_the_client_rate_limit(start_server, tmp_path):
    limited = start_server(tmp_path / "pki", "--rate-limit-client", "0.01", "--rate-limit-client-burst", "3")
    codes = [get(limited, "/ui/chain").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes


# --- sigil inspect --server --------------------------------------------------------------------------------------


def test_inspect_server_shows_the_remote_tree(sigil, server):
    tree = sigil.ok("inspect", "--server", base(server), "--ca-bundle", server.bundle).stdout
    for authority in authorities(server):
        assert authority["id"] in tree and f"[{authority['role']}, {authority['state']}" in tree
    as_json = json.loads(sigil.ok("inspect", "--server", base(server), "--ca-bundle", server.bundle,
                                  "--json").stdout)
    assert as_json == get(server, "/v1/authorities").json()


def test_inspect_server_refuses_an_unverified_server(sigil, server, other_data_dir):
    result = sigil.run("inspect", "--server", base(server), "--ca-bundle", other_data_dir / "bundle.pem")
    assert result.returncode != 0 and result.stderr.startswith("Error: unavailable:"), result
    result = sigil.run("inspect", "--server", "http://localhost:1", "--ca-bundle", server.bundle)
    assert result.returncode != 0 and "https://" in result.stderr, result
