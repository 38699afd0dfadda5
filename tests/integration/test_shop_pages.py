"""Shop pages in-process against real PostgreSQL: sign-up cookie, CSRF, upload, ring constructor, errors."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from alexandrite.kit.settings import Settings
from alexandrite.models3d.geometry import analyse
from alexandrite.models3d.rings import ring
from alexandrite.models3d.shapes import box
from alexandrite.models3d.writers import to_binary_stl, to_obj
from alexandrite.shop.app import create_app

RING = to_binary_stl(ring(segments=48, profile_segments=8))


@pytest.fixture(scope="module")
async def app(settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings.replace(**{"run_relay": False, "run_consumer": False,
                                                         "max_upload_bytes": 2_000_000, "max_triangles": 50_000}))
    async with LifespanManager(application):
        yield application


def browser(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://shop.test",  # type: ignore[arg-type]
                             headers={"Origin": "http://shop.test"})


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def signed_up(client: httpx.AsyncClient) -> str:
    email = f"p-{uuid.uuid4().hex[:10]}@example.test"
    answer = await client.post("/signup", data={"name": "Page Tester", "email": email, "password": "s3cret-pass"})
    assert answer.status_code == 303 and answer.headers["location"] == "/orders/new"
    cookie = answer.headers["set-cookie"]
    assert "alex_shop_session=" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    page = await client.get("/orders/new")
    assert page.status_code == 200
    return csrf_of(page.text)


async def test_signed_out_visitors_are_sent_to_sign_in_and_bad_sign_ins_read_plainly(app: object) -> None:
    async with browser(app) as client:
        answer = await client.get("/orders")
        assert answer.status_code == 303 and answer.headers["location"] == "/signin?next=/orders"
        polled = await client.get(f"/orders/{uuid.uuid4()}/live", headers={"HX-Request": "true"})
        assert polled.headers["HX-Redirect"].startswith("/signin")
        wrong = await client.post("/signin", data={"email": "nobody@example.test", "password": "x"})
        assert wrong.status_code == 401 and "The e-mail or the password is wrong." in wrong.text
        short = await client.post("/signup", data={"name": "A", "email": "a@example.test", "password": "short"})
        assert short.status_code == 422 and "Password: String should have at least 8 characters" in short.text
        forged = await client.get("/signin?next=//evil.example/x")
        assert 'value="/orders"' in forged.text


async def test_posts_need_the_csrf_token_and_the_same_origin(app: object) -> None:
    async with browser(app) as client:
        token = await signed_up(client)
        files = {"file": ("ring.stl", RING, "model/stl")}
        missing = await client.post("/orders/new", data={"alloy": "gold_585"}, files=files)
        assert missing.status_code == 403 and "Request refused" in missing.text
        cross = await client.post("/orders/new", data={"alloy": "gold_585", "csrf_token": token}, files=files,
                                  headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403
        ok = await client.post("/orders/new", data={"alloy": "gold_585", "csrf_token": token}, files=files)
        assert ok.status_code == 303


async def test_upload_shows_server_facts_preview_and_submit(app: object) -> None:
    async with browser(app) as client:
        token = await signed_up(client)
        answer = await client.post("/orders/new", data={"alloy": "silver_925", "csrf_token": token,
                                                        "idempotency_key": uuid.uuid4().hex},
                                   files={"file": ("box.obj", to_obj(box(10, 8, 3)), "text/plain")})
        assert answer.status_code == 303
        order_url = answer.headers["location"]
        page = await client.get(order_url)
        assert page.status_code == 200
        assert "Model uploaded" in page.text and "10.0 × 8.0 × 3.0 mm" in page.text
        assert "240.0 mm³" in page.text and ">12<" in page.text  # volume and triangles from the server
        assert "Submit the order" in page.text and "Cancel the order" in page.text
        stl = await client.get(order_url + "/model.stl")
        assert stl.status_code == 200 and analyse_stl(stl.content) == pytest.approx(240.0)
        live = await client.get(order_url + "/live?shown=FILE_UPLOADED")
        assert live.status_code == 200 and 'id="progress"' in live.text
        submitted = await client.post(order_url + "/submit", data={"csrf_token": token})
        assert submitted.status_code == 303 and "notice=" in submitted.headers["location"]
        changed = await client.get(order_url + "/live?shown=FILE_UPLOADED")
        assert changed.status_code == 200 and changed.headers["HX-Retarget"] == "#order-main"
        assert changed.text.lstrip().startswith('<div id="order-main" data-live=') and "Submitted" in changed.text
        page = await client.get(order_url)
        assert "Submitted" in page.text and 'hx-trigger="every 2s"' in page.text
        again = await client.post(order_url + "/model", data={"csrf_token": token},
                                  files={"file": ("ring.stl", RING, "model/stl")})
        assert again.headers["location"].endswith("?error=illegal_transition&now=SUBMITTED")  # codes, not words
        shown = await client.get(again.headers["location"])
        assert "That is not possible any more: the order is now “Submitted”." in shown.text
        listing = await client.get("/orders")
        assert order_url.removeprefix("/orders/")[:8] in listing.text


def analyse_stl(data: bytes) -> float:
    from alexandrite.models3d.formats import parse_model

    return analyse(parse_model(data, "x.stl").triangles).volume_mm3


async def test_a_bad_upload_reads_plainly_and_keeps_the_order_for_a_retry(app: object) -> None:
    async with browser(app) as client:
        token = await signed_up(client)
        bad = await client.post("/orders/new", data={"alloy": "gold_750", "csrf_token": token},
                                files={"file": ("broken.stl", b"solid x\nfacet normal 0 0 1\nendsolid x\n",
                                                "model/stl")})
        assert bad.status_code == 422
        assert "Sorry" in bad.text and "The ASCII STL file contains no facets." in bad.text
        kept = re.search(r'name="order_id" value="([0-9a-f-]+)"', bad.text)
        assert kept
        retry = await client.post("/orders/new", data={"alloy": "gold_750", "csrf_token": token,
                                                       "order_id": kept.group(1)},
                                  files={"file": ("ring.stl", RING, "model/stl")})
        assert retry.headers["location"] == f"/orders/{kept.group(1)}"
        nofile = await client.post("/orders/new", data={"alloy": "gold_750", "csrf_token": token})
        assert nofile.status_code == 422 and "Choose a 3D model file" in nofile.text
        other = await client.get(f"/orders/{uuid.uuid4()}")
        assert other.status_code == 404 and "There is no such order in your account." in other.text


async def test_ring_constructor_previews_and_orders_a_watertight_ring(app: object) -> None:
    async with browser(app) as client:
        token = await signed_up(client)
        form = await client.get("/rings/new")
        assert form.status_code == 200 and "US 7 — 17.32 mm" in form.text
        params = {"size_and_system": "eu:54", "band_width_mm": "5", "thickness_mm": "2", "profile": "court",
                  "setting": "bezel", "stone_mm": "6", "alloy": "gold_750"}
        preview = await client.get("/rings/preview.stl", params=params)
        assert preview.status_code == 200
        from alexandrite.models3d.formats import parse_model

        facts = analyse(parse_model(preview.content, "ring.stl").triangles)
        assert facts.watertight and facts.volume_mm3 > 300
        shown = await client.get("/rings/facts", params=params)
        assert "17.19 mm" in shown.text and f"{facts.volume_mm3:.1f} mm³" in shown.text
        bad = await client.get("/rings/facts", params={**params, "band_width_mm": "40"})
        assert "The band width must be between 1.5 and 12 mm." in bad.text
        bad_stl = await client.get("/rings/preview.stl", params={**params, "size_and_system": "us:7.3"})
        assert bad_stl.status_code == 422 and bad_stl.json()["error"]["code"] == "invalid_ring"
        ordered = await client.post("/rings/new", data={**params, "csrf_token": token})
        assert ordered.status_code == 303
        page = await client.get(ordered.headers["location"])
        assert "Model uploaded" in page.text and "ring-eu54-court-bezel.stl" in page.text
        assert f"{facts.volume_mm3:.1f} mm³" in page.text and "Submit the order" in page.text
        refused = await client.post("/rings/new", data={**params, "setting": "halo", "csrf_token": token})
        assert refused.status_code == 422 and "Choose a setting: none, bezel, prongs." in refused.text


async def test_a_customer_cancels_while_allowed(app: object) -> None:
    async with browser(app) as client:
        token = await signed_up(client)
        answer = await client.post("/orders/new", data={"alloy": "gold_585", "csrf_token": token},
                                   files={"file": ("ring.stl", RING, "model/stl")})
        order_url = answer.headers["location"]
        cancelled = await client.post(order_url + "/cancel", data={"csrf_token": token})
        page = await client.get(cancelled.headers["location"])
        assert "Your order is cancelled." in page.text and "Cancelled" in page.text
        assert "Cancel the order" not in page.text and "hx-trigger" not in page.text  # final: no polling
        again = await client.post(order_url + "/cancel", data={"csrf_token": token})
        assert "not possible any more" in (await client.get(again.headers["location"])).text


def test_delay_notice_is_rendered_in_the_progress_panel() -> None:
    from datetime import UTC, datetime

    from alexandrite.shop.pages import pages

    html = pages.env.get_template("_progress.html").render(
        order={"id": uuid.uuid4(), "status": "MANUFACTURING_STARTED", "progress": None},
        poll_seconds=15, csrf_token="",
        delay={"stage": "MANUFACTURING_STARTED", "since": datetime(2026, 11, 20, tzinfo=UTC),
               "new_eta": datetime(2026, 12, 2, tzinfo=UTC)})
    assert "Delayed:" in html and "We now expect to ship it by 02 December 2026." in html


@pytest.mark.parametrize(("position", "eta", "words"), [
    (3, 12.4, ["There are <strong>2</strong> models ahead of yours.", "About <strong>12 s</strong> left."]),
    (2, 75, ["There is <strong>1</strong> model ahead of yours.", "About <strong>1 min 15 s</strong> left."]),
    (1, 0.0, ["Your model is first in line.", "It is taking a little longer than we estimated."]),
])
def test_pricing_progress_reads_plainly(position: int, eta: float, words: list[str]) -> None:
    from alexandrite.shop.pages import pages

    html = pages.env.get_template("_progress.html").render(
        order={"id": uuid.uuid4(), "status": "PRICE_CALCULATING",
               "progress": {"queue_position": position, "eta_seconds": eta}},
        poll_seconds=2, csrf_token="")
    assert all(w in html for w in words), html
    assert 'hx-trigger="every 2s"' in html and 'aria-live="polite"' in html


async def test_a_recorded_delay_shows_on_the_order_page(app: object) -> None:
    from datetime import UTC, datetime, timedelta

    from alexandrite.shop.tables import order_delays

    async with browser(app) as client:
        token = await signed_up(client)
        answer = await client.post("/orders/new", data={"alloy": "gold_585", "csrf_token": token},
                                   files={"file": ("ring.stl", RING, "model/stl")})
        order_id = uuid.UUID(answer.headers["location"].rsplit("/", 1)[-1])
        now = datetime.now(UTC)
        async with app.state.db.sessions() as session:  # type: ignore[attr-defined]
            await session.execute(order_delays.insert().values(
                order_id=order_id, stage="DELIVERY", since=now - timedelta(days=9), sla_seconds=86400.0,
                detected_at=now, new_eta=datetime(2031, 3, 4, tzinfo=UTC)))
            await session.commit()
        page = await client.get(f"/orders/{order_id}")
        assert "Delayed:" in page.text and "We now expect to ship it by 04 March 2031." in page.text
