"""The whole journey in a real browser (Debian's Chromium driven by Playwright) against real processes.

A customer signs up, uploads a ring and submits it with the keyboard, watches PRICE_CALCULATING turn
into a price without a reload; a seller approves; an operator takes, advances and ships; the seller
closes. Every page is screenshotted into test-artifacts/screenshots/ and checked for labels and contrast,
and for anything the pages' Content-Security-Policy blocked (a refused script or style fails the journey).
"""

from __future__ import annotations

import re
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import issue_token
from alexandrite.models3d.rings import ring
from alexandrite.models3d.writers import to_binary_stl
from tests.e2e.processes import Platform

playwright_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (deploy/debian-packages.txt)", allow_module_level=True)

pytestmark = pytest.mark.e2e
SHOTS = Path("test-artifacts") / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]
TIMEOUT_MS = 30_000
ORDER_URL = re.compile(r"/orders/([0-9a-f-]{36})")

# Every form control has a label; every text's contrast against its background is at least 4.5:1.
AUDIT_JS = """
() => {
  const problems = [];
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden' || el.offsetParent === null) continue;
    if (!(el.labels && el.labels.length) && !el.getAttribute('aria-label')) problems.push('unlabelled ' + (el.name || el.id));
  }
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
      .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  let checked = 0;
  for (const el of document.querySelectorAll('body *')) {
    if (el.offsetParent === null || el.closest('.viewer')) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(el);
    const fg = rgb(style.color).slice(0, 3), bg = background(el);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    checked += 1;
    if (ratio < 4.5) problems.push(`contrast ${ratio.toFixed(2)} for "${el.textContent.trim().slice(0, 30)}"`);
  }
  return {problems, checked};
}
"""


@pytest.fixture(scope="module")
def platform(settings: Settings, test_env: dict[str, str]) -> Iterator[Platform]:
    running = Platform.configure(settings, test_env, Path("test-artifacts") / f"browser-{uuid.uuid4().hex[:6]}")
    try:
        running.start_all(workers=1)
        yield running
    finally:
        running.stop_all()


# Every Content-Security-Policy violation any page reports: the console's "Refused to ..." lines and the
# securitypolicyviolation events (recorded by an init script, which the policy does not govern).
VIOLATIONS: list[str] = []
WATCH_CSP_JS = """
document.addEventListener('securitypolicyviolation', (e) => {
  (window.__cspViolations = window.__cspViolations || []).push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


async def new_context(browser: object, **options: object) -> object:
    """A browser context whose pages report every policy violation into VIOLATIONS."""
    context = await browser.new_context(**options)  # type: ignore[attr-defined]
    await context.add_init_script(WATCH_CSP_JS)

    def on_console(message: object) -> None:
        text = message.text  # type: ignore[attr-defined]
        if "Refused to" in text or "Content Security Policy" in text:
            VIOLATIONS.append(text)

    context.on("page", lambda page: page.on("console", on_console))
    return context


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with playwright_api.async_playwright() as p:
        launched = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def shoot(page: object, name: str, *, audit: bool = True) -> None:
    """Screenshot the page and check its labels and contrast."""
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]
    reported = await page.evaluate("window.__cspViolations || []")  # type: ignore[attr-defined]
    assert not reported and not VIOLATIONS, (name, reported, VIOLATIONS)
    if audit:
        result = await page.evaluate(AUDIT_JS)  # type: ignore[attr-defined]
        assert result["checked"] > 5 and not result["problems"], (name, result["problems"][:5])


def staff(settings: Settings, role: str, name: str) -> str:
    return issue_token(settings, Principal(role=role, subject=name, name=name), 3600)


async def staff_page(browser: object, url: str, token: str, viewport: dict[str, int] | None = None) -> object:
    """A signed-in staff tab (its sign-in page screenshotted on the way)."""
    context = await new_context(browser, viewport=viewport or {"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(url + "/signin")
    await shoot(page, f"00-{url.rsplit(':', 1)[-1]}-staff-signin")
    await page.get_by_label("Staff token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    return page


async def test_customer_seller_operator_journey(platform: Platform, browser: object, tmp_path: Path) -> None:
    settings = platform.settings
    shop, crm, mes = (settings.service_url(s) for s in ("shop", "crm", "mes"))  # type: ignore[arg-type]
    model = tmp_path / "my-ring.stl"
    model.write_bytes(to_binary_stl(ring(18.0, 5.0, 2.0, "court", segments=96, profile_segments=16)))

    # --- customer: sign up, upload with a local preview, submit with the keyboard -------------------
    context = await new_context(browser, viewport={"width": 1280, "height": 900})
    customer = await context.new_page()
    customer.set_default_timeout(TIMEOUT_MS)
    await customer.goto(shop + "/")
    await shoot(customer, "00-shop-home")
    await customer.goto(shop + "/signin")
    await shoot(customer, "00-shop-signin")
    await customer.goto(shop + "/signup")
    await shoot(customer, "01-shop-signup")
    await customer.get_by_label("Your name").fill("Ada Browser")
    await customer.get_by_label("E-mail").fill(f"ada-{uuid.uuid4().hex[:8]}@example.test")
    await customer.get_by_label("Password").fill("s3cret-pass")
    await customer.get_by_role("button", name="Create the account").click()
    await customer.wait_for_url("**/orders/new")

    await customer.get_by_label("3D model").set_input_files(str(model))
    await customer.locator("#local-facts").filter(has_text="In your browser").wait_for()
    await customer.locator("#preview[data-loaded]").wait_for()
    await customer.get_by_label("Gold 750 (18k)").check()
    await shoot(customer, "02-shop-upload-preview")
    # Keyboard only: from the metal choice, Tab reaches the upload button; Enter sends the form.
    for _ in range(10):
        await customer.keyboard.press("Tab")
        if await customer.evaluate("document.activeElement.type === 'submit'"):
            break
    assert await customer.evaluate("document.activeElement.textContent.trim()") == "Upload the model"
    await customer.keyboard.press("Enter")
    await customer.wait_for_url(ORDER_URL)
    order_id = ORDER_URL.search(customer.url).group(1)  # type: ignore[union-attr]
    await customer.get_by_text("Model uploaded").first.wait_for()
    facts = customer.get_by_label("Model facts")
    assert "22.0 × 22.0 × 5.0 mm" in await facts.inner_text() and "mm³" in await facts.inner_text()
    await customer.locator(".viewer[data-loaded]").wait_for()
    await shoot(customer, "03-shop-order-uploaded")

    # Production is frozen so the price calculation can be watched; the page must not reload.
    platform.signal("worker-1", signal.SIGSTOP)
    try:
        await customer.get_by_role("button", name="Submit the order").click()
        await customer.locator("#progress").filter(has_text="Calculating the price").wait_for()
        await customer.evaluate("window.stillThisPage = true")
        progress = await customer.locator("#progress").inner_text()
        assert "first in line" in progress or "ahead of yours" in progress
        assert " left." in progress or "longer than we estimated" in progress
        await shoot(customer, "04-shop-price-calculating")
    finally:
        platform.signal("worker-1", signal.SIGCONT)
    await customer.get_by_role("heading", name="Your price").wait_for()
    assert await customer.evaluate("window.stillThisPage === true"), "the page reloaded"
    quote = await customer.locator("table.quote").inner_text()
    assert "Total" in quote and "EUR" in quote
    await shoot(customer, "05-shop-price-ready")

    # --- seller approves ---------------------------------------------------------------------------
    seller = await staff_page(browser, crm, staff(settings, "seller", "sally"))
    await seller.get_by_label("Search").fill(order_id[:8])
    await seller.get_by_role("button", name="Show orders").click()
    await seller.get_by_role("link", name=order_id[:8]).click()
    await seller.get_by_role("button", name="Approve for manufacturing").wait_for()
    await shoot(seller, "06-crm-order-priced")
    await seller.get_by_role("button", name="Approve for manufacturing").click()
    await seller.get_by_text("Approved: the order is now on the production dashboard.").wait_for()
    await seller.goto(crm + "/orders")
    await shoot(seller, "07-crm-orders")

    # --- operator takes, advances, ships -----------------------------------------------------------
    operator = await staff_page(browser, mes, staff(settings, "operator", "olga"))
    take = operator.get_by_role("button", name=f"Take order {order_id[:8]} into work")
    for _ in range(60):  # the approval reaches production as an event; the board refreshes itself
        if await take.count():
            break
        await operator.wait_for_timeout(500)
    await shoot(operator, "08-mes-dashboard")
    await take.click()
    await operator.get_by_text("Done: the order is now “Being made”.").wait_for()
    await operator.locator(".viewer[data-loaded]").wait_for()
    await shoot(operator, "09-mes-order-taken")
    await operator.get_by_role("button", name="Mark as made").click()
    await operator.get_by_role("button", name="Mark as packed").click()
    await operator.get_by_label("Carrier").fill("DHL")
    await operator.get_by_label("Tracking number").fill("JD0001234567")
    await shoot(operator, "10-mes-ship-form")
    await operator.get_by_role("button", name="Ship").click()
    await operator.get_by_text("Done: the order is now “Shipped”.").wait_for()

    # --- seller closes -----------------------------------------------------------------------------
    close = seller.get_by_role("button", name="Close the order")
    for _ in range(60):
        await seller.goto(f"{crm}/orders/{order_id}")
        if await close.count():
            break
        await seller.wait_for_timeout(500)
    await close.click()
    await seller.get_by_text("The order is closed.").wait_for()
    await shoot(seller, "11-crm-order-closed")

    # --- the customer sees the whole story ---------------------------------------------------------
    for _ in range(60):
        await customer.goto(f"{shop}/orders/{order_id}")
        if await customer.locator("#progress").filter(has_text="Delivered and closed").count():
            break
        await customer.wait_for_timeout(500)
    timeline = await customer.get_by_label("Status history").inner_text()
    for words in ("Calculating the price", "Price ready", "Approved for making", "Being made", "Shipped",
                  "Delivered and closed"):
        assert words in timeline
    await shoot(customer, "12-shop-order-closed")
    await customer.get_by_role("link", name="My orders").click()
    await customer.get_by_role("link", name=order_id[:8]).wait_for()
    await shoot(customer, "13-shop-my-orders")


async def test_ring_constructor_phone_width_and_a_bad_upload(platform: Platform, browser: object,
                                                            tmp_path: Path) -> None:
    shop = platform.settings.net.shop_url
    context = await new_context(browser, viewport={"width": 390, "height": 844}, is_mobile=True,
                                has_touch=True, device_scale_factor=2)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(shop + "/signup")
    await page.get_by_label("Your name").fill("Phone User")
    await page.get_by_label("E-mail").fill(f"phone-{uuid.uuid4().hex[:8]}@example.test")
    await page.get_by_label("Password").fill("s3cret-pass")
    await page.get_by_role("button", name="Create the account").click()
    await page.wait_for_url("**/orders/new")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways"
    await shoot(page, "20-phone-upload")

    broken = tmp_path / "broken.stl"
    broken.write_bytes(b"solid nothing\nendsolid nothing\n")
    await page.get_by_label("3D model").set_input_files(str(broken))
    await page.get_by_role("button", name="Upload the model").click()
    alert = page.get_by_role("alert")
    await alert.wait_for()
    assert "The ASCII STL file contains no facets." in await alert.inner_text()
    await shoot(page, "21-phone-bad-upload")

    await page.goto(shop + "/rings/new")
    await page.locator("#ring-preview[data-loaded]").wait_for()
    first = await page.get_by_label("Ring facts").inner_text()
    await page.get_by_label("Court").check()
    await page.get_by_label("Four prongs").check()
    await page.get_by_label("Ring facts").filter(has_not_text=first.split("Volume")[1][:12]).wait_for()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await shoot(page, "22-phone-ring-constructor")
    await page.get_by_role("button", name="Order this ring").click()
    await page.get_by_text("Your ring is ready to order").wait_for()
    await page.locator(".viewer[data-loaded]").wait_for()
    await shoot(page, "23-phone-ring-ordered")

    await page.goto(shop + "/orders")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await shoot(page, "25-phone-my-orders")

    seller = await staff_page(browser, platform.settings.net.crm_url, staff(platform.settings, "seller", "sam"),
                              viewport={"width": 390, "height": 844})
    await seller.get_by_role("button", name="Show orders").wait_for()
    assert await seller.evaluate("document.documentElement.scrollWidth") <= 390, "the CRM list scrolls sideways"
    await shoot(seller, "26-phone-crm-orders")

    wide = await new_context(browser, viewport={"width": 1280, "height": 900},
                             storage_state=await context.storage_state())
    desk = await wide.new_page()
    await desk.goto(shop + "/rings/new")
    await desk.get_by_label("Bezel (a rim around the stone)").check()
    await desk.locator("#ring-preview[data-loaded]").wait_for()
    await desk.wait_for_timeout(600)  # the debounced reload after the change
    await desk.locator("#ring-preview[data-loaded]").wait_for()
    await shoot(desk, "24-ring-constructor")

