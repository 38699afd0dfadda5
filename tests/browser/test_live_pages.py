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
        polls.clear()  # the catch-up fetch when the stream opened is not polling
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


async def test_the_board_moves_a_row_when_another_operator_takes_it(platform: Platform,  # noqa: F811
                                                                     browser: object) -> None:  # noqa: F811
    import httpx

    from alexandrite.kit.db import Database
    from alexandrite.kit.live.announce import Announcer, stream_key
    from alexandrite.kit.redis_clients import redis_client
    from alexandrite.mes.dashboard import attach_cache, make_cache
    from tests.browser.test_journey import staff, staff_page
    from tests.integration.mes_orders import approved_order

    settings = platform.settings
    mes = settings.service_url("mes")  # type: ignore[arg-type]
    # An approved order arrives the way the mes consumer applies the CRM's event (announced after commit).
    db = Database(settings.database_url("mes"), pool_size=2)
    redis = redis_client(settings)
    db.order_listeners.append(Announcer(redis, stream_key(settings.redis.prefix, "mes"), 10000))
    attach_cache(db, make_cache(settings))  # and drops the cached board pages, as the mes process would
    try:
        page = await staff_page(browser, mes, staff(settings, "operator", "olga"))
        await page.wait_for_url("**/production/dashboard")  # type: ignore[attr-defined]
        await page.locator("body[data-live='open']").wait_for()  # type: ignore[attr-defined]
        order_id = await approved_order(db)
        row = page.locator("#board tr", has_text=str(order_id)[:8])  # type: ignore[attr-defined]
        await row.filter(has_text="Approved for making").wait_for()  # appeared without a reload or a poll
        async with httpx.AsyncClient(base_url=mes, timeout=30) as client:  # another operator takes it
            taken = await client.post(f"/api/v1/production/orders/{order_id}/take",
                                      headers={"Authorization": f"Bearer {staff(settings, 'operator', 'ivan')}"})
            assert taken.status_code == 200, taken.text
        await row.filter(has_text="Being made").wait_for()
        await shoot(page, "21-mes-board-row-moved-live")
    finally:
        await db.dispose()
        await redis.aclose()
