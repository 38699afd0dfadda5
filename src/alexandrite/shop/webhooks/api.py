"""Partner webhook endpoint API: register a URL (get the signing secret), inspect and replay deliveries."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from alexandrite.kit.auth import require
from alexandrite.kit.errors import ApiError
from alexandrite.kit.security import Principal
from alexandrite.shop import webhooks
from alexandrite.shop.schemas import (
    WebhookDeliveryPage,
    WebhookIn,
    WebhookOut,
    WebhookRegistered,
    WebhookReplayIn,
    WebhookReplayOut,
)

webhook_router = APIRouter(prefix="/api/v1/webhook", tags=["webhooks"])


async def _partner(principal: Annotated[Principal, Depends(require("partner"))]) -> uuid.UUID:
    if principal.role != "partner":
        raise ApiError(403, "forbidden", "Webhooks belong to a partner: call with the partner's X-API-Key.")
    return uuid.UUID(principal.subject)


PartnerId = Annotated[uuid.UUID, Depends(_partner)]


@webhook_router.put("", response_model=WebhookRegistered)
async def register(body: WebhookIn, request: Request, partner_id: PartnerId) -> dict[str, Any]:
    settings = request.app.state.settings
    url = webhooks.check_url(str(body.url), settings)
    await webhooks.check_url_resolves(url, settings, getattr(request.app.state, "webhook_resolver", None))
    secret = await webhooks.register(request.app.state.db, partner_id, url)
    return {"url": url, "secret": secret, "signature_header": webhooks.SIGNATURE_HEADER,
            "timestamp_header": webhooks.TIMESTAMP_HEADER}


@webhook_router.get("", response_model=WebhookOut)
async def show(request: Request, partner_id: PartnerId) -> dict[str, Any]:
    return await webhooks.endpoint(request.app.state.db, partner_id)


@webhook_router.delete("", status_code=204)
async def remove(request: Request, partner_id: PartnerId) -> Response:
    await webhooks.unregister(request.app.state.db, partner_id)
    return Response(status_code=204)


@webhook_router.get("/deliveries", response_model=WebhookDeliveryPage)
async def deliveries(request: Request, partner_id: PartnerId,
                     state: Annotated[Literal["pending", "delivered", "dead"] | None, Query()] = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    return {"items": await webhooks.list_deliveries(request.app.state.db, partner_id, state, limit)}


@webhook_router.post("/deliveries/replay", response_model=WebhookReplayOut)
async def replay(body: WebhookReplayIn, request: Request, partner_id: PartnerId) -> dict[str, Any]:
    if not body.all and not body.delivery_ids:
        raise ApiError(422, "invalid_request", "Say which deliveries to replay: delivery_ids or all=true.")
    count = await webhooks.replay(request.app.state.db, partner_id, None if body.all else body.delivery_ids)
    return {"replayed": count}
