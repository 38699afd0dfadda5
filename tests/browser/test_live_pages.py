"""Live pages in a real browser: the customer's order page hears its price through the event stream, keeps
listening across a restart of the shop (reconnects and catches up), and no script is blocked by the
Content-Security-Policy."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

from alexandrite.models3d.rings import ring
from alexandrite.models3d.writers import to_binary_stl
from tests.browser.test_journey import ORDER_URL, TIMEOUT_MS, browser, new_context, platform, shoot  # noqa: F401 - fixtures
from tests.e2e.processes import Platform


async def test_the_order_page_hears_its_price_across_a_shop_restart(platform: Platform,  # noqa: F811
                                                                     browser: object,  # noqa: F811
                                                                     tmp_path: Path) -> None:
    shop = platform.settings.service_url("shop")  # type: ignore[arg-type]
    model = tmp_path / "ring.stl"
    model.write_bytes(to_binary_stl(ring(17.0, 4.0, 1.8, "court", segments=64, profile_segments=12)))
    context = await new_context(browser, viewport={"width": 1280, "height": 900})
    page = await context.new_page()  # type: ignore[attr-defined]
    page.set_default_timeout(TIMEOUT_MS)
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if request.url.endswith("/live") or
            "/live?" in request.url else None)
    await page.goto(shop + "/signup")
    await page.get_by_label("Your name").fill("Lin Live")
    await page.get_by_label("E-mail").fill(f"lin-{uuid.uuid4().hex[:8]}@example.test")
    await page.get_by_label("Password").fill("s3cret-pass")
    await page.get_by_role("button", name="Create the account").click()
    await page.wait_for_url("**/orders/new")
    await page.get_by_label("3D model").set_input_files(str(model))
    await page.get_by_label("Gold 750 (18k)").check()
    await page.get_by_role("button", name="Upload the model").click()
    await page.wait_for_url(ORDER_URL)

    platform.signal("worker-1", signal.SIGSTOP)  # the price waits while the shop restarts
    try:
        await page.get_by_role("button", name="Submit the order").click()
        await page.locator("body[data-live='open']").wait_for()
        await page.locator("#progress").filter(has_text="Calculating the price").wait_for()
        await page.evaluate("window.stillThisPage = true")
        await page.wait_for_timeout(4500)  # two polling periods: the open stream stands in for them
        assert not polls, polls

        platform.kill("shop", signal.SIGTERM)  # graceful: the stream ends with "bye", the page reconnects
        platform.start("shop", "serve", "shop")
        platform.wait_ready()
        await page.locator("body[data-live='open']").wait_for(timeout=60_000)
    finally:
        platform.signal("worker-1", signal.SIGCONT)
    await page.get_by_role("heading", name="Your price").wait_for()
    assert await page.evaluate("window.stillThisPage === true"), "the page reloaded"
    assert "EUR" in await page.locator("table.quote").inner_text()
    assert await page.evaluate("document.body.dataset.live") == "open"
    await shoot(page, "20-shop-price-pushed-live")  # fails on any Content-Security-Policy violation
    await context.close()  # type: ignore[attr-defined]
