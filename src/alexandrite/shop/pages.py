"""Shop pages for customers: sign up / in, upload with a 3D preview, the ring constructor, order pages.

Every action calls the same handlers and views as the public API (no HTTP round trip to itself).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from alexandrite.contracts.order_status import CANCELLABLE, TERMINAL, IllegalTransition, OrderStatus
from alexandrite.kit.auth import public
from alexandrite.kit.errors import ApiError
from alexandrite.kit.pagination import page
from alexandrite.kit.security import Principal
from alexandrite.kit.web import session
from alexandrite.kit.web.preview import model_stl, stl_response
from alexandrite.kit.web.render import Pages, plain_error, redirect_with, safe_next, timeline
from alexandrite.mes.pricing import rings
from alexandrite.mes.pricing.geometry import analyse
from alexandrite.mes.pricing.quote import ALLOYS, DEFAULT_PRICING
from alexandrite.mes.pricing.ring_builder import SETTINGS, RingSpec, RingSpecError, build_ring, size_chart
from alexandrite.shop import handlers, repository, views
from alexandrite.shop.api import read_model_upload
from alexandrite.shop.domain import Owner
from alexandrite.shop.schemas import CreateOrder, SignIn, SignUp

SERVICE = "shop"
pages = Pages(SERVICE, Path(__file__).parent / "templates")


def _who(actor: str) -> str:
    """History actors in a customer's words (staff names and internal ids are not theirs to read)."""
    kind = actor.partition(":")[0]
    return {"customer": "you", "partner": "you", "seller": "a jeweller", "operator": "our workshop",
            "system": "our workshop", "carrier": "the carrier"}.get(kind, "Alexandrite")


pages.env.filters["who"] = _who
router = APIRouter(include_in_schema=False)
CUSTOMER = frozenset({"customer"})
S = OrderStatus
# While the price is being worked out the page polls quickly; later stages change over days.
FAST_POLL = frozenset({S.SUBMITTED, S.PRICE_CALCULATING})
RESUBMITTABLE = frozenset({S.FILE_UPLOADED})
UPLOADABLE = frozenset({S.INITIATED, S.FILE_UPLOADED, S.PRICE_CALCULATION_FAILED})


async def customer(request: Request) -> Principal:
    principal = session.current_principal(request, SERVICE, CUSTOMER)
    if principal.role != "customer":
        raise session.SignInRequired(SERVICE, "Sign in with a customer account.")
    return principal


customer.roles = CUSTOMER  # type: ignore[attr-defined]  # seen by kit.auth's default deny
Customer = Annotated[Principal, Depends(customer)]
OPEN = public("sign-up and sign-in pages come before any session")


async def csrf_checked(request: Request) -> None:
    await session.check_csrf(request, SERVICE)


Csrf = Depends(csrf_checked)


def _render(request: Request, template: str, principal: Principal | None = None, status: int = 200,
            **context: Any) -> Response:
    return pages.render(request, template, {"principal": principal, "brand": "shop", **context}, status=status)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _validation_words(error: ValidationError, labels: dict[str, str]) -> str:
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item.get("loc") else ""
        problems.append(f"{labels.get(field, field)}: {item['msg'].removeprefix('Value error, ')}")
    return "Please check the form — " + "; ".join(problems) + "."


# --- accounts ------------------------------------------------------------------------------------

@router.get("/", dependencies=[OPEN])
async def home(request: Request) -> Response:
    if session.session_token(request, SERVICE):
        return _redirect("/orders")
    return _render(request, "home.html", title="Jewellery made to your design")


@router.get("/signin", dependencies=[OPEN])
async def signin_form(request: Request, next: str = "/orders", why: str = "") -> Response:  # noqa: A002
    return _render(request, "signin.html", title="Sign in", next=safe_next(next, "/orders"), error=why or None)


@router.post("/signin", dependencies=[OPEN, Csrf])
async def signin(request: Request, email: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
                 next: Annotated[str, Form()] = "/orders") -> Response:  # noqa: A002
    target = safe_next(next, "/orders")
    try:
        body = SignIn(email=email, password=password or "")
        token = await handlers.sign_in(request.app.state.db, request.app.state.settings, body.email, body.password)
    except ValidationError:
        return _render(request, "signin.html", status=422, title="Sign in", next=target, email=email,
                       error="Enter your e-mail address and your password.")
    except ApiError as error:
        return _render(request, "signin.html", status=error.status, title="Sign in", next=target, email=email,
                       error=plain_error(error))
    response = _redirect(target)
    session.set_session(response, request.app.state.settings, SERVICE, token["access_token"])
    return response


@router.get("/signup", dependencies=[OPEN])
async def signup_form(request: Request) -> Response:
    return _render(request, "signup.html", title="Create an account")


@router.post("/signup", dependencies=[OPEN, Csrf])
async def signup(request: Request, name: Annotated[str, Form()] = "", email: Annotated[str, Form()] = "",
                 password: Annotated[str, Form()] = "") -> Response:
    db, settings = request.app.state.db, request.app.state.settings
    labels = {"name": "Your name", "email": "E-mail", "password": "Password"}
    try:
        body = SignUp(name=name, email=email, password=password)
        await handlers.sign_up(db, body.email, body.password, body.name)
        token = await handlers.sign_in(db, settings, body.email, body.password)
    except ValidationError as error:
        return _render(request, "signup.html", status=422, title="Create an account", name=name, email=email,
                       error=_validation_words(error, labels))
    except ApiError as error:
        return _render(request, "signup.html", status=error.status, title="Create an account", name=name,
                       email=email, error=plain_error(error))
    response = _redirect("/orders/new")
    session.set_session(response, settings, SERVICE, token["access_token"])
    return response


@router.post("/signout", dependencies=[OPEN, Csrf])
async def signout() -> Response:
    response = _redirect("/")
    session.clear_session(response, SERVICE)
    return response


# --- orders --------------------------------------------------------------------------------------

@router.get("/orders")
async def my_orders(request: Request, principal: Customer,
                    cursor: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    limit = 20
    try:
        async with request.app.state.db.sessions() as db_session:
            rows = await repository.list_orders(db_session, Owner.of(principal), statuses=None, cursor=cursor,
                                                limit=limit)
    except ApiError as error:
        return _render(request, "orders.html", principal, status=error.status, title="My orders", items=[],
                       error=plain_error(error))
    items, next_cursor = page(rows, limit)
    return _render(request, "orders.html", principal, title="My orders", items=[views.summary(r) for r in items],
                   next_url=f"/orders?{urlencode({'cursor': next_cursor})}" if next_cursor else None)


def _alloys() -> list[dict[str, Any]]:
    return [{"id": a, "density": DEFAULT_PRICING.density_g_cm3[a]} for a in ALLOYS]


@router.get("/orders/new")
async def new_order_form(request: Request, principal: Customer) -> Response:
    return _render(request, "new_order.html", principal, title="Order a piece from your model", alloys=_alloys(),
                   idempotency_key=uuid.uuid4().hex)


class UploadFailed(Exception):
    """The model was refused; ``order_id`` is the order created for it, kept for the retry."""

    def __init__(self, order_id: uuid.UUID, cause: ApiError | IllegalTransition) -> None:
        super().__init__(str(cause))
        self.order_id = order_id
        self.cause = cause


async def _order_with_model(request: Request, principal: Principal, alloy: str, idempotency_key: str,
                            order_id: str, data: bytes, filename: str) -> uuid.UUID:
    """Create the order (or reuse the one a failed upload left) and attach the model: the API's handlers."""
    db = request.app.state.db
    CreateOrder(alloy=alloy)  # type: ignore[arg-type]
    reuse = None
    if order_id and _is_uuid(order_id):
        async with db.sessions() as db_session:
            row = await repository.get_owned_order(db_session, uuid.UUID(order_id), Owner.of(principal))
        if row is not None and row.alloy == alloy and S(row.status) in UPLOADABLE:
            reuse = row.id
    if reuse is None:
        reuse, _ = await handlers.create_order(db, principal, alloy, idempotency_key[:200] or None,
                                               request.headers.get("x-request-id"))
    try:
        await handlers.attach_model(db, request.app.state.storage, request.app.state.settings, principal, reuse,
                                    data, filename)
    except (ApiError, IllegalTransition) as error:
        raise UploadFailed(reuse, error) from error
    return reuse


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


@router.post("/orders/new", dependencies=[Csrf])
async def new_order(request: Request, principal: Customer, file: Annotated[UploadFile | None, File()] = None,
                    alloy: Annotated[str, Form()] = "", idempotency_key: Annotated[str, Form()] = "",
                    order_id: Annotated[str, Form()] = "") -> Response:
    context = {"title": "Order a piece from your model", "alloys": _alloys(), "alloy": alloy,
               "idempotency_key": uuid.uuid4().hex}
    if alloy not in ALLOYS:
        return _render(request, "new_order.html", principal, status=422, **context,
                       error="Choose the metal for your piece.")
    if file is None or not file.filename:
        return _render(request, "new_order.html", principal, status=422, **context,
                       error="Choose a 3D model file (STL, OBJ or 3MF) to upload.")
    try:
        data = await read_model_upload(request, file)
        created = await _order_with_model(request, principal, alloy, idempotency_key, order_id, data, file.filename)
    except UploadFailed as failed:
        return _render(request, "new_order.html", principal, status=getattr(failed.cause, "status", 409),
                       **context, order_id=str(failed.order_id), error=plain_error(failed.cause))
    except (ApiError, IllegalTransition) as error:
        return _render(request, "new_order.html", principal, status=getattr(error, "status", 409), **context,
                       order_id=order_id, error=plain_error(error))
    return _redirect(f"/orders/{created}")


async def _load(request: Request, principal: Principal, order_id: uuid.UUID, *, live: bool) -> dict[str, Any]:
    view = await views.live_order_view(request.app.state.db, request.app.state.peers, order_id,
                                       Owner.of(principal), live=live)
    if view is None:
        raise ApiError(404, "not_found", "There is no such order in your account.")
    return view


def _poll_seconds(status: str) -> int | None:
    if S(status) in TERMINAL:
        return None
    return 2 if S(status) in FAST_POLL else 15


def _order_context(view: dict[str, Any]) -> dict[str, Any]:
    status = S(view["status"])
    return {
        "order": view, "timeline": timeline(view["history"]), "poll_seconds": _poll_seconds(view["status"]),
        "can_submit": status in RESUBMITTABLE, "can_upload": status in UPLOADABLE,
        "can_cancel": status in CANCELLABLE, "delay": view.get("delay"),
        "alloys": _alloys(),
    }


@router.get("/orders/{order_id}")
async def order_page(request: Request, order_id: uuid.UUID, principal: Customer, error: str = "",
                     notice: str = "") -> Response:
    try:
        view = await _load(request, principal, order_id, live=True)
    except ApiError as failure:
        return _render(request, "message.html", principal, status=failure.status, title="Order not found",
                       error=plain_error(failure))
    return _render(request, "order.html", principal, title=f"Order {str(order_id)[:8]}", error=error or None,
                   notice=notice or None, **_order_context(view))


@router.get("/orders/{order_id}/live")
async def order_live(request: Request, order_id: uuid.UUID, principal: Customer,
                     shown: Annotated[str, Query(max_length=40)] = "") -> Response:
    """The progress panel, polled by htmx. Once the status has changed, the whole order column (quote,
    actions, history) is sent instead and swapped in its place: the page updates without a reload."""
    view = await _load(request, principal, order_id, live=True)
    if shown and shown != view["status"]:
        response = _render(request, "_order_main.html", principal, **_order_context(view))
        response.headers.update({"HX-Retarget": "#order-main", "HX-Reswap": "outerHTML"})
        return response
    return _render(request, "_progress.html", principal, **_order_context(view))


@router.get("/orders/{order_id}/model.stl")
async def order_model(request: Request, order_id: uuid.UUID, principal: Customer) -> Response:
    view = await _load(request, principal, order_id, live=False)
    if not view.get("model"):
        raise ApiError(404, "not_found", "This order has no model yet.")
    return stl_response(await model_stl(request.app.state.storage, view["model"], request.app.state.settings))


def _back(order_id: uuid.UUID, *, error: Exception | None = None, notice: str = "") -> RedirectResponse:
    return redirect_with(f"/orders/{order_id}", error=error, notice=notice)


@router.post("/orders/{order_id}/submit", dependencies=[Csrf])
async def submit(request: Request, order_id: uuid.UUID, principal: Customer) -> Response:
    try:
        await handlers.submit(request.app.state.db, principal, order_id)
    except (ApiError, IllegalTransition) as error:
        return _back(order_id, error=error)
    return _back(order_id, notice="Thank you — your order is submitted. We are working out its price.")


@router.post("/orders/{order_id}/cancel", dependencies=[Csrf])
async def cancel(request: Request, order_id: uuid.UUID, principal: Customer) -> Response:
    try:
        status = await handlers.cancel(request.app.state.db, request.app.state.peers, principal, order_id,
                                       "cancelled by the customer on the web")
    except (ApiError, IllegalTransition) as error:
        return _back(order_id, error=error)
    # A cancel carried out by production reaches the shop's view through its event: wait briefly.
    for _ in range(30):
        view = await _load(request, principal, order_id, live=False)
        if view["status"] == status:
            break
        await asyncio.sleep(0.1)
    return _back(order_id, notice="Your order is cancelled.")


@router.post("/orders/{order_id}/model", dependencies=[Csrf])
async def replace_model(request: Request, order_id: uuid.UUID, principal: Customer,
                        file: Annotated[UploadFile | None, File()] = None) -> Response:
    if file is None or not file.filename:
        return _back(order_id, error=ApiError(422, "file_required", "Choose a model file to upload."))
    try:
        data = await read_model_upload(request, file)
        await handlers.attach_model(request.app.state.db, request.app.state.storage, request.app.state.settings,
                                    principal, order_id, data, file.filename)
    except (ApiError, IllegalTransition) as error:
        return _back(order_id, error=error)
    return _back(order_id, notice="The new model is attached. Check it and submit the order.")


# --- ring constructor ----------------------------------------------------------------------------

def _ring_spec(params: dict[str, Any]) -> RingSpec:
    """A RingSpec from form or query values; RingSpecError with the field for anything unreadable."""
    defaults = RingSpec()
    values: dict[str, Any] = {}
    combined = params.get("size_and_system")
    if combined:  # the form's one select: "us:7.0"
        system, _, size = str(combined).partition(":")
        params = {**params, "size_system": system, "size": size}
    for name in ("size", "band_width_mm", "thickness_mm", "stone_mm"):
        raw = params.get(name)
        if raw in (None, ""):
            continue
        try:
            values[name] = float(raw)
        except (TypeError, ValueError) as error:
            raise RingSpecError(name, f"The {name.removesuffix('_mm').replace('_', ' ')} must be a number.") from error
    for name in ("size_system", "profile", "setting"):
        if params.get(name):
            values[name] = str(params[name])
    if "size" in values and "size_system" not in values:
        values["size_system"] = defaults.size_system
    return RingSpec(**values).check()


def _ring_facts(spec: RingSpec) -> dict[str, Any]:
    facts = analyse(build_ring(spec))
    return {"size_mm": [round(v, 1) for v in facts.size_mm], "volume_mm3": facts.volume_mm3,
            "triangles": facts.triangles, "watertight": facts.watertight,
            "inner_diameter_mm": spec.inner_diameter_mm(),
            "mass_g": {a: facts.volume_mm3 / 1000 * DEFAULT_PRICING.density_g_cm3[a] for a in ALLOYS}}


@router.get("/rings/new")
async def ring_form(request: Request, principal: Customer) -> Response:
    spec = RingSpec()
    return _render(request, "ring.html", principal, title="Design a ring", spec=spec, sizes=size_chart(),
                   profiles=rings.PROFILES, settings_=SETTINGS, alloys=_alloys(), facts=_ring_facts(spec),
                   idempotency_key=uuid.uuid4().hex)


@router.get("/rings/preview.stl")
async def ring_preview(request: Request, _: Customer) -> Response:
    try:
        spec = _ring_spec(dict(request.query_params))
    except RingSpecError as error:
        raise ApiError(422, "invalid_ring", error.message, details={"field": error.field}) from error
    data = rings.to_binary_stl(await asyncio.to_thread(build_ring, spec))
    return Response(data, media_type="model/stl")


@router.get("/rings/facts")
async def ring_facts(request: Request, principal: Customer) -> Response:
    try:
        spec = _ring_spec(dict(request.query_params))
    except RingSpecError as error:
        return _render(request, "_ring_facts.html", principal, facts=None, error=error.message)
    return _render(request, "_ring_facts.html", principal, facts=await asyncio.to_thread(_ring_facts, spec),
                   alloy=request.query_params.get("alloy"))


@router.post("/rings/new", dependencies=[Csrf])
async def ring_order(request: Request, principal: Customer) -> Response:
    form = await request.form()
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    alloy = params.get("alloy", "")
    try:
        spec = _ring_spec(params)
        if alloy not in ALLOYS:
            raise RingSpecError("alloy", "Choose the metal for your ring.")
    except RingSpecError as error:
        return _render(request, "ring.html", principal, status=422, title="Design a ring", spec=RingSpec(),
                       sizes=size_chart(), profiles=rings.PROFILES, settings_=SETTINGS, alloys=_alloys(),
                       facts=None, idempotency_key=uuid.uuid4().hex, error=error.message)
    data = rings.to_binary_stl(await asyncio.to_thread(build_ring, spec),
                               header=f"alexandrite ring {spec.profile} {spec.setting}".encode())
    filename = f"ring-{spec.size_system}{spec.size:g}-{spec.profile}-{spec.setting}.stl"
    try:
        created = await _order_with_model(request, principal, alloy, params.get("idempotency_key", ""), "", data,
                                          filename)
    except (UploadFailed, ApiError, IllegalTransition) as failure:
        cause = failure.cause if isinstance(failure, UploadFailed) else failure
        return _render(request, "ring.html", principal, status=getattr(cause, "status", 409), title="Design a ring",
                       spec=spec, sizes=size_chart(), profiles=rings.PROFILES, settings_=SETTINGS,
                       alloys=_alloys(), facts=None, idempotency_key=uuid.uuid4().hex, error=plain_error(cause))
    return _redirect(f"/orders/{created}?{urlencode({'notice': 'Your ring is ready to order: check it and submit.'})}")


def install(app: Any) -> None:
    pages.install(app, router)
