"""Late orders on the staff boards in a real browser (Chromium via Playwright) against real processes:
the operators' board lists the most overdue first and says "Late by …" in words; the sellers' list of
orders waiting for approval does the same. Screenshots: 30-mes-board-late, 31-crm-waiting-late."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from alexandrite.kit.cache import PageCache
from alexandrite.kit.settings import Settings
from alexandrite.mes.dashboard import CACHE_NAME, IN_WORK_STATUSES
from tests.browser.test_journey import browser, platform, shoot, staff, staff_page  # noqa: F401  (fixtures)
from tests.e2e.processes import Platform, fetch

pytestmark = pytest.mark.e2e
DAY, HOUR, MINUTE = 86400, 3600, 60
QUOTE = {"total": 812.4, "currency": "EUR"}


async def production_order(settings: Settings, status: str, name: str, in_stage: float) -> uuid.UUID:
    """An in-work order that entered ``status`` ``in_stage`` seconds ago (the counts trigger keeps up)."""
    order_id, now = uuid.uuid4(), datetime.now(UTC)
    await fetch(settings, "mes", """
        INSERT INTO production_orders (id, alloy, status, seq, owner_kind, owner_name, quote, operator,
                                       created_at, updated_at, status_since, approved_at)
        VALUES ($1, 'gold_750', $2, 7, 'customer', $3, $4::jsonb, $5, $6, $6, $7, $7)""",
                order_id, status, name, json.dumps(QUOTE),
                None if status == "MANUFACTURING_APPROVED" else "operator:olga",
                now - timedelta(seconds=in_stage + DAY), now - timedelta(seconds=in_stage))
    return order_id


async def waiting_order(settings: Settings, name: str, waiting: float) -> uuid.UUID:
    order_id, now = uuid.uuid4(), datetime.now(UTC)
    await fetch(settings, "crm", """
        INSERT INTO orders (id, status, seq, alloy, owner_kind, owner_id, owner_name, total, currency,
                            created_at, updated_at, status_since)
        VALUES ($1, 'PRICE_CALCULATED', 5, 'silver_925', 'customer', $2, $3, 812.40, 'EUR', $4, $4, $5)""",
                order_id, f"c-{order_id.hex[:6]}", name, now - timedelta(seconds=waiting + HOUR),
                now - timedelta(seconds=waiting))
    return order_id


async def test_late_orders_appear_as_late(platform: Platform, browser: object) -> None:  # noqa: F811
    settings = platform.settings
    crm, mes = settings.service_url("crm"), settings.service_url("mes")  # type: ignore[arg-type]
    sla = settings.sla.seconds
    late = await production_order(settings, "MANUFACTURING_APPROVED", "Lina Late",
                                  sla["MANUFACTURING_APPROVED"] + 3 * HOUR + 20 * MINUTE + 30)
    later = await production_order(settings, "MANUFACTURING_STARTED", "Max Overdue",
                                   sla["MANUFACTURING_STARTED"] + DAY + 2 * HOUR + 30)
    fresh = await production_order(settings, "PACKAGING", "Olga On-Time", 2 * HOUR)
    await production_order(settings, "MANUFACTURING_APPROVED", "Nils New", 25 * MINUTE)
    cache = PageCache.from_settings(settings, CACHE_NAME)
    if cache is not None:  # rows written beside the service: drop its cached pages as a status change does
        await cache.invalidate(IN_WORK_STATUSES)
        await cache.close()

    operator = await staff_page(browser, mes, staff(settings, "operator", "olga"))
    await operator.goto(mes + "/production/dashboard?sort=late")  # type: ignore[attr-defined]
    rows = operator.locator("tbody tr")  # type: ignore[attr-defined]
    await rows.first.wait_for()
    first, second = (await rows.nth(0).inner_text()), (await rows.nth(1).inner_text())
    assert str(later)[:8] in first and "Late by 1 d 2 h" in first  # most overdue first
    assert str(late)[:8] in second and "Late by 3 h 20 min" in second
    late_row = operator.locator("tr", has_text=str(late)[:8])  # type: ignore[attr-defined]
    assert "late" in (await late_row.get_attribute("class") or "")
    assert "Warning:" in await late_row.locator(".late-badge").inner_text()  # read out, not only coloured
    fresh_row = operator.locator("tr", has_text=str(fresh)[:8])  # type: ignore[attr-defined]
    assert "On time" in await fresh_row.inner_text()
    await shoot(operator, "30-mes-board-late")
    await operator.get_by_role("link", name="Late only").click()  # type: ignore[attr-defined]
    await operator.wait_for_url("**late=true**")  # type: ignore[attr-defined]
    assert str(fresh)[:8] not in await operator.locator("tbody").inner_text()  # type: ignore[attr-defined]

    oldest = await waiting_order(settings, "Wanda Waiting", sla["PRICE_CALCULATED"] + 5 * HOUR + 30)
    await waiting_order(settings, "Paul Patient", sla["PRICE_CALCULATED"] + 40 * MINUTE + 30)
    newest = await waiting_order(settings, "Nora Newly-Priced", 20 * MINUTE)
    seller = await staff_page(browser, crm, staff(settings, "seller", "sally"))
    await seller.get_by_role("link", name="To approve").click()  # type: ignore[attr-defined]
    await seller.get_by_role("heading", name="Waiting for approval").wait_for()  # type: ignore[attr-defined]
    text = await seller.locator("tbody").inner_text()  # type: ignore[attr-defined]
    assert text.index(str(oldest)[:8]) < text.index(str(newest)[:8])  # longest waiting first
    row = await seller.locator("tr", has_text=str(oldest)[:8]).inner_text()  # type: ignore[attr-defined]
    assert "Late by 5 h" in row
    await shoot(seller, "31-crm-waiting-late")
