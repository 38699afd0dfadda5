"""The pages' Content-Security-Policy: scripts only from files (the import map by its hash), no inline handlers,
no eval-driven htmx, no plugins, no <base>, no framing; and a browser really refuses what the policy forbids."""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from alexandrite.crm.app import create_app as create_crm
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import issue_token
from alexandrite.kit.web.csp import PAGE_POLICY
from alexandrite.mes.app import create_app as create_mes
from alexandrite.models3d.rings import ring
from alexandrite.models3d.writers import to_binary_stl
from alexandrite.shop.app import create_app as create_shop

REQUIRED = ("script-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'")
TEMPLATES = Path(__file__).resolve().parents[2] / "src" / "alexandrite"


def directives(policy: str) -> dict[str, list[str]]:
    found = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            found[words[0]] = words[1:]
    return found


class Scripts(HTMLParser):
    """Every <script> (its attributes and inline text) and every inline event handler of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.handlers: list[str] = []
        self.triggers: list[str] = []
        self._open: dict[str, str | None] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        self.handlers += [f"{tag} {k}" for k in named if k.startswith("on")]
        self.handlers += [f"{tag} {k}" for k, v in named.items() if v and v.strip().lower().startswith("javascript:")]
        if named.get("hx-trigger"):
            self.triggers.append(str(named["hx-trigger"]))
        if tag == "script":
            self._open, self._text = named, ""

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._open is not None:
            self.scripts.append((self._open, self._text))
            self._open = None


def check_page(response: httpx.Response) -> None:
    policies = response.headers.get_list("content-security-policy")
    page_policy = next((p for p in policies if "script-src" in p), None)
    assert page_policy is not None, (response.url, policies)
    for needed in REQUIRED:
        assert needed in page_policy, (needed, page_policy)
    script_src = directives(page_policy)["script-src"]
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    parsed = Scripts()
    parsed.feed(response.text)
    assert not parsed.handlers, (response.url, parsed.handlers)
    assert not [t for t in parsed.triggers if "[" in t], (response.url, parsed.triggers)  # filters need eval
    for attrs, text in parsed.scripts:
        if attrs.get("src"):
            assert attrs["src"].startswith("/static/") and not text.strip(), (response.url, attrs)
            continue
        digest = "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
        assert digest in script_src, (response.url, "inline script not allowed by hash", text[:80])


@pytest.fixture(scope="module")
async def clients(settings: Settings) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    local = settings.replace(run_relay=False, run_consumer=False, run_webhooks=False)
    async with AsyncExitStack() as stack:
        found = {}
        for name, factory in (("shop", create_shop), ("crm", create_crm), ("mes", create_mes)):
            app = factory(local)
            await stack.enter_async_context(LifespanManager(app))
            found[name] = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=f"http://{name}"))
        yield found


async def test_every_page_a_customer_sees_carries_the_policy(clients: dict[str, httpx.AsyncClient]) -> None:
    shop = clients["shop"]
    for path in ("/", "/signin", "/signup"):
        check_page(await shop.get(path))
    email = f"csp-{uuid.uuid4().hex[:8]}@example.test"
    signed = await shop.post("/signup", data={"name": "Csp", "email": email, "password": "s3cret-pass"})
    assert signed.status_code == 303
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', (await shop.get("/orders/new")).text)
    assert csrf is not None
    created = await shop.post("/orders/new", data={"alloy": "gold_585", "csrf_token": csrf.group(1)},
                              files={"file": ("ring.stl", to_binary_stl(ring(segments=48, profile_segments=8)),
                                              "model/stl")})
    assert created.status_code == 303, created.text
    order_url = created.headers["location"].split("?")[0]
    for path in ("/orders", "/orders/new", "/rings/new", order_url, order_url + "?error=not_found"):
        response = await shop.get(path)
        assert response.status_code == 200, path
        check_page(response)


async def test_every_staff_page_carries_the_policy(clients: dict[str, httpx.AsyncClient], settings: Settings) -> None:
    for name, role, paths in (("crm", "seller", ("/orders", f"/orders/{uuid.uuid4()}")),
                              ("mes", "operator", ("/production/dashboard", f"/production/orders/{uuid.uuid4()}"))):
        client = clients[name]
        check_page(await client.get("/signin"))
        token = issue_token(settings, Principal(role=role, subject=role, name=role), 600)
        await client.post("/signin", data={"token": token, "next": paths[0]})
        for path in paths:
            check_page(await client.get(path))


def test_no_template_has_an_inline_script_handler_or_eval_trigger() -> None:
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        for found in re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", text):
            assert 'type="importmap"' in found, (template, found)  # allowed by its hash, printed verbatim
        assert "{{ import_map|safe }}</script>" in text or "importmap" not in text, template
        assert not re.search(r"\son[a-z]+\s*=", text), template
        assert not re.search(r'hx-trigger="[^"]*\[', text), template
        assert "hx-on" not in text and "js:" not in text, template


# --- a real browser refuses what the policy forbids ----------------------------------------------

PROBE = """<!doctype html><html><head><meta charset="utf-8">
<script>window.inlineRan = true;</script>
<script src="/ok.js"></script>
</head><body><p>probe</p><object data="/x.swf"></object></body></html>"""


class ProbeServer:
    """Serves a page with the pages' policy and content that breaks it (the negative control)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                body, kind = (b"window.fileRan = true;", "text/javascript") if self.path == "/ok.js" else \
                    (PROBE.encode(), "text/html")
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Security-Policy", PAGE_POLICY)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_a_browser_refuses_an_inline_script_under_the_policy() -> None:
    playwright_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Debian's chromium is not installed (deploy/debian-packages.txt)")
    from tests.browser.test_journey import ARGS, WATCH_CSP_JS

    probe = ProbeServer()
    console: list[str] = []
    try:
        async with playwright_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(chromium), args=ARGS)
            try:
                context = await browser.new_context()
                await context.add_init_script(WATCH_CSP_JS)
                page = await context.new_page()
                page.on("console", lambda message: console.append(message.text))
                await page.goto(probe.url)
                await page.wait_for_function("window.fileRan === true")
                state: dict[str, Any] = await page.evaluate(
                    "({inline: window.inlineRan === true, violations: window.__cspViolations || []})")
            finally:
                await browser.close()
    finally:
        probe.close()
    assert state["inline"] is False  # the inline script did not run; the file did
    assert any(v.startswith("script-src") for v in state["violations"]), state
    assert any("Content Security Policy" in line for line in console), console  # what the console says
