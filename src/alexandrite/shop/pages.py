"""Shop pages for customers: sign up / in, upload with a 3D preview, order pages.

Every action calls the same handlers and views as the public API (no HTTP round trip to itself).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from pydantic import ValidationError
from starlette.responses import JSONResponse, RedirectResponse, Response

from alexandrite.contracts.alloys import ALLOYS
from alexandrite.contracts.order_status import CANCELLABLE, TERMINAL, IllegalTransition, OrderStatus
from alexandrite.kit.auth import client_address
from alexandrite.kit.errors import ApiError
from alexandrite.kit.pagination import page
from alexandrite.kit.security import Principal
from alexandrite.kit.web import session
from alexandrite.kit.web.preview import model_stl, model_walls, stl_response
from alexandrite.kit.web.render import safe_next
from alexandrite.orders.words import error_code, page_messages, plain_error, redirect_with, timeline
from alexandrite.shop import handlers, order_streams, repository, ring_pages, views
from alexandrite.shop.api import read_model_upload
from alexandrite.shop.domain import Owner
from alexandrite.shop.page_base import (
    OPEN,
    SERVICE,
    UPLOADABLE,
    Csrf,
    Customer,
    UploadFailed,
    alloy_choices,
    order_with_model,
    pages,
    redirect,
    render,
    validation_words,
)
from alexandrite.shop.schemas import SignIn, SignUp

router = APIRouter(include_in_schema=False)
S = OrderStatus
# While the price is being worked out the page polls quickly; later stages change over days.
FAST_POLL = frozenset({S.SUBMITTED, S.PRICE_CALCULATING})
RESUBMITTABLE = frozenset({S.FILE_UPLOADED})


# --- accounts ------------------------------------------------------------------------------------

@router.get("/", dependencies=[OPEN])
async def home(request: Request) -> Response:
    if session.session_token(request, SERVICE):
        return redirect("/orders")
    return render(request, "home.html", title="Jewellery made to your design")


@router.get("/signin", dependencies=[OPEN])
async def signin_form(request: Request, next: str = "/orders", why: str = "") -> Response:  # noqa: A002
    return render(request, "signin.html", title="Sign in", next=safe_next(next, "/orders"),
                  error=session.sign_in_reason(why))


@router.post("/signin", dependencies=[OPEN, Csrf])
async def signin(request: Request, email: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
                 next: Annotated[str, Form()] = "/orders") -> Response:  # noqa: A002
    target = safe_next(next, "/orders")
    try:
        body = SignIn(email=email, password=password or "")
        token = await handlers.guarded_sign_in(request.app.state, client_address(request), body.email,
                                               body.password, "signin_page")
    except ValidationError:
        return render(request, "signin.html", status=422, title="Sign in", next=target, email=email,
                       error="Enter your e-mail address and your password.")
    except ApiError as error:
        answer = render(request, "signin.html", status=error.status, title="Sign in", next=target, email=email,
                        error=plain_error(error))
        answer.headers.update(error.headers)  # Retry-After past the failed sign-in limit
        return answer
    response = redirect(target)
    session.set_session(response, request.app.state.settings, SERVICE, token["access_token"])
    return response


@router.get("/signup", dependencies=[OPEN])
async def signup_form(request: Request) -> Response:
    return render(request, "signup.html", title="Create an account")


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
        return render(request, "signup.html", status=422, title="Create an account", name=name, email=email,
                       error=validation_words(error, labels))
    except ApiError as error:
        return render(request, "signup.html", status=error.status, title="Create an account", name=name,
                       email=email, error=plain_error(error))
    response = redirect("/orders/new")
    session.set_session(response, settings, SERVICE, token["access_token"])
    return response


@router.post("/signout", dependencies=[OPEN, Csrf])
async def signout(request: Request) -> Response:
    await session.end_session(request, SERVICE)
    response = redirect("/")
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
        return render(request, "orders.html", principal, status=error.status, title="My orders", items=[],
                       error=plain_error(error))
    items, next_cursor = page(rows, limit)
    return render(request, "orders.html", principal, title="My orders", items=[views.summary(r) for r in items],
                   next_url=f"/orders?{urlencode({'cursor': next_cursor})}" if next_cursor else None)


@router.get("/orders/new")
async def new_order_form(request: Request, principal: Customer) -> Response:
    return render(request, "new_order.html", principal, title="Order a piece from your model", alloys=alloy_choices(),
                   idempotency_key=uuid.uuid4().hex)


@router.post("/orders/new", dependencies=[Csrf])
async def new_order(request: Request, principal: Customer, file: Annotated[UploadFile | None, File()] = None,
                    alloy: Annotated[str, Form()] = "", idempotency_key: Annotated[str, Form()] = "",
                    order_id: Annotated[str, Form()] = "") -> Response:
    context = {"title": "Order a piece from your model", "alloys": alloy_choices(), "alloy": alloy,
               "idempotency_key": uuid.uuid4().hex}
    if alloy not in ALLOYS:
        return render(request, "new_order.html", principal, status=422, **context,
                       error="Choose the metal for your piece.")
    if file is None or not file.filename:
        return render(request, "new_order.html", principal, status=422, **context,
                       error="Choose a 3D model file (STL, OBJ or 3MF) to upload.")
    try:
        data = await read_model_upload(request, file)
        created = await order_with_model(request, principal, alloy, idempotency_key, order_id, data, file.filename)
    except UploadFailed as failed:
        return render(request, "new_order.html", principal, status=getattr(failed.cause, "status", 409),
                       **context, order_id=str(failed.order_id), error=plain_error(failed.cause))
    except (ApiError, IllegalTransition) as error:
        return render(request, "new_order.html", principal, status=getattr(error, "status", 409), **context,
                       order_id=order_id, error=plain_error(error))
    return redirect(f"/orders/{created}")


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
    asked = ((view.get("failure") or {}).get("details") or {}).get("confirm")
    return {
        "order": view, "timeline": timeline(view["history"]), "poll_seconds": _poll_seconds(view["status"]),
        "can_submit": status in RESUBMITTABLE, "can_upload": status in UPLOADABLE,
        "can_confirm_scale": status is S.PRICE_CALCULATION_FAILED and asked == "scale",
        "can_cancel": status in CANCELLABLE, "delay": view.get("delay"),
        "alloys": alloy_choices(),
    }


@router.get("/orders/{order_id}")
async def order_page(request: Request, order_id: uuid.UUID, principal: Customer, error: str = "",
                     notice: str = "", now: str = "") -> Response:
    return await _order_page(request, principal, order_id, **page_messages(error, notice, now))  # type: ignore[arg-type]


async def _order_page(request: Request, principal: Principal, order_id: uuid.UUID, *, error: str | None = None,
                      notice: str | None = None, status: int = 200) -> Response:
    try:
        view = await _load(request, principal, order_id, live=True)
    except ApiError as failure:
        return render(request, "message.html", principal, status=failure.status, title="Order not found",
                       error=plain_error(failure))
    return render(request, "order.html", principal, status=status, title=f"Order {str(order_id)[:8]}",
                   error=error, notice=notice, **_order_context(view))


@router.get("/orders/{order_id}/live")
async def order_live(request: Request, order_id: uuid.UUID, principal: Customer,
                     shown: Annotated[str, Query(max_length=40)] = "") -> Response:
    """The progress panel, polled by htmx. Once the status has changed, the whole order column (quote,
    actions, history) is sent instead and swapped in its place: the page updates without a reload."""
    view = await _load(request, principal, order_id, live=True)
    if shown and shown != view["status"]:
        response = render(request, "_order_main.html", principal, **_order_context(view))
        response.headers.update({"HX-Retarget": "#order-main", "HX-Reswap": "outerHTML"})
        return response
    return render(request, "_progress.html", principal, **_order_context(view))


@router.get("/orders/{order_id}/model.stl")
async def order_model(request: Request, order_id: uuid.UUID, principal: Customer) -> Response:
    view = await _load(request, principal, order_id, live=False)
    if not view.get("model"):
        raise ApiError(404, "not_found", "This order has no model yet.")
    return stl_response(await model_stl(request.app.state.storage, view["model"], request.app.state.settings))


@router.get("/orders/{order_id}/model-walls.json")
async def order_model_walls(request: Request, order_id: uuid.UUID, principal: Customer) -> Response:
    """Faces of model.stl (by index) thinner than the order's metal allows, for colouring the preview."""
    view = await _load(request, principal, order_id, live=False)
    if not view.get("model"):
        raise ApiError(404, "not_found", "This order has no model yet.")
    async with request.app.state.parse_slots.slot():
        walls = await model_walls(request.app.state.storage, view["model"], view["alloy"],
                                  request.app.state.settings)
    return JSONResponse(walls, headers={"Cache-Control": "private, max-age=300"})


def _back(order_id: uuid.UUID, *, error: Exception | None = None, notice: str = "") -> RedirectResponse:
    return redirect_with(f"/orders/{order_id}", error=error, notice=notice)


@router.post("/orders/{order_id}/submit", dependencies=[Csrf])
async def submit(request: Request, order_id: uuid.UUID, principal: Customer,
                 confirm: Annotated[str, Form()] = "") -> Response:
    try:
        await handlers.submit(request.app.state.db, principal, order_id, ("scale",) if confirm == "scale" else ())
    except (ApiError, IllegalTransition) as error:
        return _back(order_id, error=error)
    return _back(order_id, notice="submitted")


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
    return _back(order_id, notice="cancelled")


@router.post("/orders/{order_id}/model", dependencies=[Csrf])
async def replace_model(request: Request, order_id: uuid.UUID, principal: Customer,
                        file: Annotated[UploadFile | None, File()] = None) -> Response:
    if file is None or not file.filename:
        return _back(order_id, error=ApiError(422, "file_required", "Choose a model file to upload."))
    try:
        data = await read_model_upload(request, file)
        await handlers.attach_model(request.app.state.db, request.app.state.storage, request.app.state.settings,
                                    principal, order_id, data, file.filename, request.app.state.parse_slots)
    except (ApiError, IllegalTransition) as error:
        if error_code(error)[0] == "invalid_request":  # the file's own problem, in its precise words, here
            return await _order_page(request, principal, order_id, error=plain_error(error),
                                     status=getattr(error, "status", 422))
        return _back(order_id, error=error)
    return _back(order_id, notice="model_attached")


def install(app: Any) -> None:
    pages.install(app, router)
    pages.install(app, order_streams.page_router)
    pages.install(app, ring_pages.router)
