"""The model corpus end to end: uploaded through the shop API as a partner (and a customer), priced by a
real pricing worker, the quote and the failures read back through the API and on the shop and CRM pages.

Real PostgreSQL and storage; events travel as they are written to each service's outbox and are handed
to the next service's consumer in order (no broker needed to see what each service does with them).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import delete, select

from alexandrite.contracts.events import EVENTS_EXCHANGE, Envelope
from alexandrite.crm.app import create_app as create_crm
from alexandrite.crm.consumers import handle_event as crm_handle
from alexandrite.kit.db import Database
from alexandrite.kit.messaging.consumer import Delivery
from alexandrite.kit.messaging.tables import OUTBOX
from alexandrite.kit.messaging.topology import PRICING_QUEUE
from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.storage import LocalStorage
from alexandrite.kit.tokens import issue_token
from alexandrite.mes import domain
from alexandrite.mes.consumers import handle_event as mes_handle
from alexandrite.mes.pricing.quote import load_pricing
from alexandrite.mes.worker import PricingWorker
from alexandrite.models3d.rings import ring
from alexandrite.models3d.writers import to_ascii_stl, to_binary_stl
from alexandrite.shop.app import create_app as create_shop
from alexandrite.shop.consumers import handle_event as shop_handle
from alexandrite.shop.handlers import create_partner
from alexandrite.shop.uploads import parse_inline
from tests.fixtures import corpus

LIMITS = {"max_upload_bytes": 8_000_000, "max_triangles": 200_000}


@pytest.fixture(scope="module")
async def shop(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_shop(settings.replace(**{"run_relay": False, "run_consumer": False, **LIMITS}))
    async with LifespanManager(app):
        yield app


@pytest.fixture(scope="module")
async def crm(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_crm(settings.replace(**{"run_relay": False, "run_consumer": False}))
    async with LifespanManager(app):
        yield app


@pytest.fixture(scope="module")
async def dbs(settings: Settings) -> AsyncIterator[dict[str, Database]]:
    made = {name: Database(settings.database_url(name), pool_size=2) for name in ("shop", "crm", "mes")}
    yield made
    for db in made.values():
        await db.dispose()


@pytest.fixture(scope="module")
def worker(dbs: dict[str, Database], settings: Settings) -> PricingWorker:
    limits = settings.replace(**LIMITS).uploads.limits
    return PricingWorker(db=dbs["mes"], storage=LocalStorage(settings.uploads.storage_dir), pricing=load_pricing(None),
                         name="w-corpus", limits=limits)


@pytest.fixture(scope="module")
async def partner(shop: FastAPI, dbs: dict[str, Database]) -> dict[str, str]:
    key = await create_partner(dbs["shop"], f"corpus-{uuid.uuid4().hex[:8]}")
    return {"X-API-Key": key}


def client(app: FastAPI, host: str = "shop.test") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=f"http://{host}",
                             headers={"Origin": f"http://{host}"})


async def outbox(db: Database, order_id: str, *, jobs: bool = False) -> list[Any]:
    """Rows this service wrote for the order (events, or pricing jobs), oldest first, then forgotten."""
    where = OUTBOX.c.routing_key == PRICING_QUEUE if jobs else OUTBOX.c.exchange == EVENTS_EXCHANGE
    async with db.sessions() as session, session.begin():
        rows = (await session.execute(select(OUTBOX).where(OUTBOX.c.order_id == uuid.UUID(order_id), where)
                                      .order_by(OUTBOX.c.id))).all()
        await session.execute(delete(OUTBOX).where(OUTBOX.c.id.in_([r.id for r in rows])))
    return rows


def delivery(body: bytes, routing_key: str) -> Delivery:
    return Delivery(body=body, headers={}, routing_key=routing_key, message_id=None, attempt=0, redelivered=False)


async def carry(dbs: dict[str, Database], order_id: str, source: str, targets: dict[str, Any]) -> list[Envelope]:
    """Hand the order's new events from `source`'s outbox to each target's consumer, in order."""
    envelopes = [Envelope.model_validate_json(r.body) for r in await outbox(dbs[source], order_id)]
    for envelope in envelopes:
        for name, handle in targets.items():
            outcome = await handle(dbs[name], delivery(envelope.model_dump_json().encode(), envelope.type))
            assert outcome in ("ok", "duplicate"), (name, envelope.type, outcome)
    return envelopes


async def price_through(shop_http: httpx.AsyncClient, dbs: dict[str, Database], worker: PricingWorker,
                        headers: dict[str, str], data: bytes, filename: str, alloy: str = "gold_585",
                        confirm: list[str] | None = None, order_id: str | None = None) -> dict[str, Any]:
    """Create (or reuse), upload, submit, price, and return the order as the shop API shows it."""
    if order_id is None:
        created = await shop_http.post("/api/v1/orders", json={"alloy": alloy}, headers=headers)
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]
        uploaded = await shop_http.put(f"/api/v1/orders/{order_id}/model", headers=headers,
                                       files={"file": (filename, data, "application/octet-stream")})
        assert uploaded.status_code == 200, uploaded.text
    body = {"confirm": confirm} if confirm is not None else None
    submitted = await shop_http.post(f"/api/v1/orders/{order_id}/submit", headers=headers, json=body)
    assert submitted.status_code == 202, submitted.text
    shop_to = {"mes": mes_handle, "crm": crm_handle}
    mes_to = {"shop": shop_handle, "crm": crm_handle}
    await carry(dbs, order_id, "shop", shop_to)
    [job] = await outbox(dbs["mes"], order_id, jobs=True)
    await carry(dbs, order_id, "mes", mes_to)  # PRICE_CALCULATING
    Delivery_ = Delivery(body=job.body, headers={"event_type": domain.JOB_MESSAGE_TYPE}, routing_key=PRICING_QUEUE,
                         message_id=None, attempt=0, redelivered=False)
    assert await worker.handle(Delivery_) in ("priced", "failed")
    await carry(dbs, order_id, "mes", mes_to)  # PRICE_CALCULATED or PRICE_CALCULATION_FAILED
    answer = await shop_http.get(f"/api/v1/orders/{order_id}", headers=headers)
    assert answer.status_code == 200
    return answer.json()


CASES = {
    "bambu1": lambda: (corpus.slicer_3mf([corpus.ring_with_volume().triangles], "bambu1"), "plate.3mf"),
    "bambu2": lambda: (corpus.slicer_3mf([corpus.ring_with_volume().triangles], "bambu2"), "plate.3mf"),
    "orca": lambda: (corpus.slicer_3mf([corpus.ring_with_volume().triangles], "orca"), "plate.3mf"),
}


@pytest.mark.parametrize("flavour", sorted(CASES))
async def test_slicer_3mf_is_priced_as_a_ring(flavour: str, shop: FastAPI, dbs: dict[str, Database],
                                              worker: PricingWorker, partner: dict[str, str]) -> None:
    data, name = CASES[flavour]()
    band = corpus.ring_with_volume()
    async with client(shop) as http:
        order = await price_through(http, dbs, worker, partner, data, name)
    assert order["status"] == "PRICE_CALCULATED", order["failure"]
    quote = order["quote"]
    assert set(quote) >= {"total", "currency", "volume_mm3", "surface_mm2", "metal_mass_g", "breakdown",
                          "pricing_version"}
    assert quote["volume_mm3"] == pytest.approx(band.volume_mm3, abs=1e-3)
    assert quote["kind"] == "ring" and quote["ring"]["size"] == {"us": 7.0, "eu": 54, "in_chart": True}
    assert [s["role"] for s in quote["shells"]] == ["metal"] and quote["stones"] == []
    assert quote["wall"]["minimum_mm"] == 0.7


async def test_mirrored_pair_noise_and_flipped_patch(shop: FastAPI, dbs: dict[str, Database],
                                                     worker: PricingWorker, partner: dict[str, str]) -> None:
    pair, pair_volume = corpus.mirrored_pair()
    band = corpus.ring_with_volume()
    async with client(shop) as http:
        priced = await price_through(http, dbs, worker, partner, to_binary_stl(pair), "earrings.stl")
        assert priced["status"] == "PRICE_CALCULATED", priced["failure"]
        assert priced["quote"]["volume_mm3"] == pytest.approx(pair_volume, rel=1e-5)  # float32 STL
        assert len(priced["quote"]["shells"]) == 2
        assert [w["code"] for w in priced["quote"]["warnings"]] == ["shells_turned"]

        noisy = await price_through(http, dbs, worker, partner, to_ascii_stl(corpus.with_cad_noise(band.triangles)),
                                    "solidworks.stl")
        assert noisy["status"] == "PRICE_CALCULATED", noisy["failure"]
        assert noisy["quote"]["volume_mm3"] == pytest.approx(band.volume_mm3, abs=1e-3)

        patched = await price_through(http, dbs, worker, partner,
                                      to_ascii_stl(corpus.flipped_patch(band.triangles)), "patched.stl")
        assert patched["status"] == "PRICE_CALCULATED", patched["failure"]
        assert patched["quote"]["volume_mm3"] == pytest.approx(band.volume_mm3, abs=1e-3)
        assert "60 faces" in patched["quote"]["warnings"][0]["message"]


async def test_stones_and_overlaps_are_not_charged_as_metal(shop: FastAPI, dbs: dict[str, Database],
                                                            worker: PricingWorker, partner: dict[str, str]) -> None:
    stones, metal, count = corpus.ring_with_stones()
    bodies, united, summed = corpus.overlapping_bodies()
    async with client(shop) as http:
        ring_order = await price_through(http, dbs, worker, partner, to_ascii_stl(stones), "eternity.stl")
        quote = ring_order["quote"]
        assert quote["volume_mm3"] == pytest.approx(metal, abs=1e-3)
        assert len(quote["stones"]) == count and {s["shape"] for s in quote["stones"]} == {"round"}
        assert quote["metal_mass_g"] == pytest.approx(metal / 1000 * 13.0, abs=1e-3)
        assert sum(1 for s in quote["shells"] if s["role"] == "stone") == count
        overlap = await price_through(http, dbs, worker, partner, to_ascii_stl(bodies), "prongs.stl")
        assert overlap["quote"]["volume_mm3"] == pytest.approx(united, abs=1e-3)
        assert any(w["code"] == "overlaps_united" for w in overlap["quote"]["warnings"])


async def test_tenfold_ring_needs_a_confirmation_then_prices(shop: FastAPI, dbs: dict[str, Database],
                                                             worker: PricingWorker, partner: dict[str, str]) -> None:
    big = corpus.tenfold_ring()
    async with client(shop) as http:
        failed = await price_through(http, dbs, worker, partner, to_binary_stl(big.triangles), "engagement.stl")
        assert failed["status"] == "PRICE_CALCULATION_FAILED" and failed["quote"] is None
        failure = failed["failure"]
        assert failure["code"] == "scale_check" and failure["details"]["confirm"] == "scale"
        assert "117.0 × 117.0 × 25.0 mm" in failure["message"] and "confirm it" in failure["message"]
        again = await http.post(f"/api/v1/orders/{failed['id']}/submit", headers=partner)
        assert again.status_code == 409 and again.json()["error"]["code"] == "confirmation_required"
        confirmed = await price_through(http, dbs, worker, partner, b"", "", confirm=["scale"], order_id=failed["id"])
    assert confirmed["status"] == "PRICE_CALCULATED"
    assert confirmed["quote"]["confirmed"] == ["scale"]
    assert confirmed["quote"]["volume_mm3"] == pytest.approx(big.volume_mm3, rel=1e-5)
    statuses = [h["status"] for h in confirmed["history"]]
    assert statuses[-4:] == ["PRICE_CALCULATION_FAILED", "SUBMITTED", "PRICE_CALCULATING", "PRICE_CALCULATED"]


async def test_submit_rejects_unknown_confirmations(shop: FastAPI, partner: dict[str, str]) -> None:
    async with client(shop) as http:
        order = (await http.post("/api/v1/orders", json={"alloy": "gold_585"}, headers=partner)).json()
        answer = await http.post(f"/api/v1/orders/{order['id']}/submit", headers=partner, json={"confirm": ["price"]})
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(("name", "data", "code", "words"), [
    ("open.stl", to_binary_stl(ring(segments=64)[5:]), "not_watertight", ["open edges", "near (", "Close the holes"]),
    ("inches.stl", to_binary_stl((ring(segments=64) / 25.4)[5:]), "too_small", ["inches", "millimetres"]),
    ("huge.stl", to_binary_stl(ring(segments=64) * 10), "too_large", ["120 mm", "millimetres"]),
])
async def test_refusals_say_what_to_do(name: str, data: bytes, code: str, words: list[str], shop: FastAPI,
                                       dbs: dict[str, Database], worker: PricingWorker,
                                       partner: dict[str, str]) -> None:
    async with client(shop) as http:
        order = await price_through(http, dbs, worker, partner, data, name)
    assert order["status"] == "PRICE_CALCULATION_FAILED" and order["failure"]["code"] == code
    assert all(w in order["failure"]["message"] for w in words), order["failure"]["message"]


async def test_unsupported_3mf_extension_is_refused_at_upload(shop: FastAPI, partner: dict[str, str]) -> None:
    data = corpus.slicer_3mf([corpus.ring_with_volume().triangles], "bambu2")
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "3D/3dmodel.model":
                body = body.replace(b'requiredextensions="p"', b'xmlns:s="http://schemas.microsoft.com/'
                                    b'3dmanufacturing/slice/2015/07" requiredextensions="p s"')
            dst.writestr(info, body)
    async with client(shop) as http:
        order = (await http.post("/api/v1/orders", json={"alloy": "gold_585"}, headers=partner)).json()
        answer = await http.put(f"/api/v1/orders/{order['id']}/model", headers=partner,
                                files={"file": ("sliced.3mf", out.getvalue(), "model/3mf")})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "unsupported_extension" and "slice extension" in error["message"]


async def test_busy_parses_answer_503_with_retry_after(settings: Settings, partner: dict[str, str]) -> None:
    app = create_shop(settings.replace(**{"run_relay": False, "run_consumer": False, **LIMITS,
                                          "max_concurrent_parses": 1, "parse_wait_seconds": 0.2}))
    async with LifespanManager(app), client(app) as http:
        order = (await http.post("/api/v1/orders", json={"alloy": "gold_585"}, headers=partner)).json()
        model = to_binary_stl(ring(segments=256))
        assert not parse_inline(model)  # small binary STLs are checked on the event loop, not in a slot
        async with app.state.parse_slots.slot():  # another upload is being checked
            busy = await http.put(f"/api/v1/orders/{order['id']}/model", headers=partner,
                                  files={"file": ("r.stl", model, "model/stl")})
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        assert busy.json()["error"]["code"] == "uploads_busy" and "again" in busy.json()["error"]["message"]
        fine = await http.put(f"/api/v1/orders/{order['id']}/model", headers=partner,
                              files={"file": ("r.stl", to_binary_stl(ring(segments=32)), "model/stl")})
        assert fine.status_code == 200


async def test_pages_show_ring_stones_walls_and_the_confirm_button(
        shop: FastAPI, crm: FastAPI, dbs: dict[str, Database], worker: PricingWorker, settings: Settings) -> None:
    async with client(shop) as http:
        email = f"c-{uuid.uuid4().hex[:10]}@example.test"
        await http.post("/api/v1/auth/signup", json={"email": email, "password": "s3cret-pass", "name": "Jo"})
        token = (await http.post("/api/v1/auth/token", json={"email": email, "password": "s3cret-pass"})).json()
        bearer = {"Authorization": f"Bearer {token['access_token']}"}
        stones, _, count = corpus.ring_with_stones()
        with_stones = await price_through(http, dbs, worker, bearer, to_ascii_stl(stones), "eternity.stl")
        thin = await price_through(http, dbs, worker, bearer, to_binary_stl(corpus.thin_band().triangles), "thin.stl")
        big = await price_through(http, dbs, worker, bearer, to_binary_stl(corpus.tenfold_ring().triangles), "big.stl")
        http.cookies.set("alex_shop_session", token["access_token"])
        page = (await http.get(f"/orders/{with_stones['id']}")).text
        assert "Ring size" in page and "US 7 · EU 54" in page and "17.30 mm across" in page
        assert page.count("<td>round</td>") == count and "to be confirmed" in page
        assert "priced the metal without them" in page
        thin_page = (await http.get(f"/orders/{thin['id']}")).text
        assert "Thinnest wall" in thin_page and "0.45 mm" in thin_page
        assert f'data-walls="/orders/{thin["id"]}/model-walls.json"' in thin_page and "shown in red" in thin_page
        walls = (await http.get(f"/orders/{thin['id']}/model-walls.json")).json()
        assert walls["checked"] and walls["minimum_mm"] == 0.7 and len(walls["thin_faces"]) > 0
        faces = np.frombuffer((await http.get(f"/orders/{thin['id']}/model.stl")).content[80:84], dtype="<u4")[0]
        assert max(walls["thin_faces"]) < faces == walls["faces"]
        big_page = (await http.get(f"/orders/{big['id']}")).text
        assert "Is the size right?" in big_page and 'name="confirm" value="scale"' in big_page
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', big_page)
        assert csrf is not None
        answer = await http.post(f"/orders/{big['id']}/submit", data={"csrf_token": csrf.group(1), "confirm": "scale"})
        assert answer.status_code == 303 and "error" not in answer.headers["location"]
        assert (await http.get(f"/api/v1/orders/{big['id']}", headers=bearer)).json()["status"] == "SUBMITTED"
    seller = issue_token(settings, Principal(role="seller", subject="sam", name="Sam"), 600)
    async with client(crm, "crm.test") as staff:
        staff.cookies.set("alex_crm_session", seller)
        crm_page = (await staff.get(f"/orders/{with_stones['id']}")).text
        assert "US 7 · EU 54" in crm_page and crm_page.count("<td>round</td>") == count
        crm_thin = (await staff.get(f"/orders/{thin['id']}")).text
        assert "thinner than 0.7 mm" in crm_thin
        crm_big = (await staff.get(f"/orders/{big['id']}")).text
        assert "Please check the size" in crm_big
    await asyncio.sleep(0)
