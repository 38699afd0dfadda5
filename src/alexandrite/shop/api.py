"""Shop HTTP API v1: accounts and orders for customers and partner sellers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Header, Query, Request, UploadFile
from fastapi.responses import Response

from alexandrite.contracts.order_status import OrderStatus
from alexandrite.kit.auth import CurrentService, client_address, public, require
from alexandrite.kit.errors import ApiError, not_found
from alexandrite.kit.pagination import page
from alexandrite.kit.revocation import revoke_token
from alexandrite.kit.security import Principal
from alexandrite.shop import handlers, order_reads, order_writes, repository, views
from alexandrite.shop.domain import Owner
from alexandrite.shop.schemas import (
    CancelOrder,
    ChangePassword,
    CreateOrder,
    CustomerOut,
    InternalCancel,
    OrderOut,
    OrderPage,
    SignIn,
    SignUp,
    SubmitOrder,
    TokenOut,
)

router = APIRouter(prefix="/api/v1", tags=["shop"])
# Service-to-service only (the service token): not part of the public API description.
internal = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)

Buyer = Annotated[Principal, Depends(require("customer", "partner"))]


def _owner(principal: Principal) -> Owner | None:
    return None if principal.role == "admin" else Owner.of(principal)


async def _view(request: Request, order_id: uuid.UUID, principal: Principal, *, live: bool = False) -> dict[str, Any]:
    view = await order_reads.order_view(request.app.state.db, request.app.state.peers, order_id, _owner(principal),
                                        live=live)
    if view is None:
        raise not_found()
    return view


def _order_response(view: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The order as pre-serialised JSON (the same fields and bytes as ``OrderOut``)."""
    return Response(order_reads.order_json(view), status, headers, media_type="application/json")


async def read_model_upload(request: Request, file: UploadFile) -> bytes:
    """The uploaded file's bytes; 413 ``file_too_large`` past the configured limit."""
    settings = request.app.state.settings
    too_large = ApiError(413, "file_too_large", f"The file is larger than {settings.uploads.max_bytes // 2**20} MB.")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.uploads.max_bytes + 64 * 1024:
        raise too_large
    data = await file.read(settings.uploads.max_bytes + 1)
    if len(data) > settings.uploads.max_bytes:
        raise too_large
    return data


@router.post("/auth/signup", response_model=CustomerOut, status_code=201,
             dependencies=[public("anyone may open a customer account")])
async def sign_up(body: SignUp, request: Request) -> dict[str, Any]:
    return await handlers.sign_up(request.app.state.db, body.email, body.password, body.name)


@router.post("/auth/token", response_model=TokenOut, dependencies=[public("signing in needs no token")])
async def sign_in(body: SignIn, request: Request) -> dict[str, Any]:
    return await handlers.guarded_sign_in(request.app.state, client_address(request), body.email, body.password,
                                          "signin")


@router.post("/auth/signout", status_code=204, responses={401: {"description": "No valid token"}})
async def sign_out(request: Request, principal: Annotated[Principal, Depends(require("customer"))]) -> Response:
    """Revoke the token this request carries (it stops working on every replica at once)."""
    if principal.token_id:
        await revoke_token(request.app.state.redis, request.app.state.settings.redis.prefix, principal.token_id,
                           principal.expires_at)
    return Response(status_code=204)


@router.post("/auth/password", status_code=204)
async def change_password(body: ChangePassword, request: Request,
                          principal: Annotated[Principal, Depends(require("customer"))]) -> Response:
    """Change the password; every token of the account issued so far is revoked (sign in again)."""
    await handlers.change_password(request.app.state, principal, body.current_password, body.new_password)
    return Response(status_code=204)


@router.post("/orders", response_model=OrderOut, status_code=201)
async def create_order(
    body: CreateOrder,
    request: Request,
    principal: Buyer,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> Response:
    view, created = await order_writes.create_order(
        request.app.state.db, principal, body.alloy, idempotency_key, request.headers.get("x-request-id")
    )
    return _order_response(view, 201, None if created else {"Idempotent-Replayed": "true"})


@router.put("/orders/{order_id}/model", response_model=OrderOut,
            responses={503: {"description": "Every model check of this server is busy; see Retry-After"}})
async def upload_model(
    order_id: uuid.UUID, request: Request, principal: Buyer, file: Annotated[UploadFile, File()]
) -> Response:
    data = await read_model_upload(request, file)
    view = await handlers.attach_model(request.app.state.db, request.app.state.storage, request.app.state.settings,
                                       principal, order_id, data, file.filename, request.app.state.parse_slots)
    return _order_response(view)


@router.post("/orders/{order_id}/submit", response_model=OrderOut, status_code=202,
             responses={503: {"description": "Pricing backlog exceeds its SLA; see Retry-After"}})
async def submit(order_id: uuid.UUID, request: Request, principal: Buyer,
                 body: SubmitOrder | None = None) -> Response:
    eta = await request.app.state.backlog.admit()
    view = await handlers.submit(request.app.state.db, principal, order_id, tuple(body.confirm) if body else ())
    return _order_response(view, 202, {"Pricing-ETA-Seconds": str(round(eta))} if eta is not None else None)


@router.get("/orders/{order_id}", response_model=OrderOut)
async def get_order(order_id: uuid.UUID, request: Request, principal: Buyer) -> Response:
    return _order_response(await _view(request, order_id, principal, live=True))


@router.get("/orders", response_model=OrderPage)
async def list_orders(
    request: Request,
    principal: Buyer,
    status: Annotated[list[OrderStatus] | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    async with request.app.state.db.sessions() as session:
        rows = await repository.list_orders(
            session, Owner.of(principal), statuses=[s.value for s in status] if status else None,
            cursor=cursor, limit=limit,
        )
    items, next_cursor = page(rows, limit)
    return {"items": [views.summary(r) for r in items], "next_cursor": next_cursor}


@router.post("/orders/{order_id}/cancel", response_model=OrderOut)
async def cancel(
    order_id: uuid.UUID, request: Request, principal: Buyer, body: CancelOrder | None = None
) -> dict[str, Any]:
    status = await handlers.cancel(request.app.state.db, request.app.state.peers, principal, order_id,
                                   body.reason if body else None)
    view = await _view(request, order_id, principal)
    # A cancel carried out by another service reaches this view through its event: wait briefly.
    for _ in range(30):
        if view["status"] == status:
            break
        await asyncio.sleep(0.1)
        view = await _view(request, order_id, principal)
    view["status"] = status
    return view


@internal.post("/orders/{order_id}/cancel")
async def internal_cancel(order_id: uuid.UUID, body: InternalCancel, request: Request,
                          _: CurrentService) -> dict[str, Any]:
    status = await handlers.cancel_locally(request.app.state.db, order_id, requested_by=body.requested_by,
                                           actor=body.actor, reason=body.reason)
    return {"id": str(order_id), "status": status}
