"""What every shop page shares: the template set, the signed-in customer, CSRF, rendering, and ordering
a piece from a model file (the new-order page and the ring constructor both do)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from alexandrite.contracts.alloys import ALLOYS
from alexandrite.contracts.order_status import IllegalTransition, OrderStatus
from alexandrite.kit.auth import public
from alexandrite.kit.errors import ApiError
from alexandrite.kit.security import Principal
from alexandrite.kit.web import session
from alexandrite.orders.words import order_pages
from alexandrite.shop import handlers, repository
from alexandrite.shop.domain import Owner
from alexandrite.shop.schemas import CreateOrder

SERVICE = "shop"
pages = order_pages(SERVICE, Path(__file__).parent / "templates")
CUSTOMER = frozenset({"customer"})
S = OrderStatus
UPLOADABLE = frozenset({S.INITIATED, S.FILE_UPLOADED, S.PRICE_CALCULATION_FAILED})


def _who(actor: str) -> str:
    """History actors in a customer's words (staff names and internal ids are not theirs to read)."""
    kind = actor.partition(":")[0]
    return {"customer": "you", "partner": "you", "seller": "a jeweller", "operator": "our workshop",
            "system": "our workshop", "carrier": "the carrier"}.get(kind, "Alexandrite")


pages.env.filters["who"] = _who

pages.env.filters["who"] = _who


async def customer(request: Request) -> Principal:
    principal = await session.current_principal(request, SERVICE, CUSTOMER)
    if principal.role != "customer":
        raise session.SignInRequired(SERVICE, "customer_account")
    return principal


customer.roles = CUSTOMER  # type: ignore[attr-defined]  # seen by kit.auth's default deny
Customer = Annotated[Principal, Depends(customer)]
OPEN = public("sign-up and sign-in pages come before any session")


async def csrf_checked(request: Request) -> None:
    await session.check_csrf(request, SERVICE)


Csrf = Depends(csrf_checked)


def render(request: Request, template: str, principal: Principal | None = None, status: int = 200,
           **context: Any) -> Response:
    return pages.render(request, template, {"principal": principal, "brand": "shop", **context}, status=status)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def validation_words(error: ValidationError, labels: dict[str, str]) -> str:
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item.get("loc") else ""
        problems.append(f"{labels.get(field, field)}: {item['msg'].removeprefix('Value error, ')}")
    return "Please check the form — " + "; ".join(problems) + "."



def alloy_choices() -> list[dict[str, Any]]:
    """The metals offered on the forms, with their nominal densities (what estimates before pricing use)."""
    return [{"id": alloy.name, "density": alloy.density_g_cm3} for alloy in ALLOYS.values()]


class UploadFailed(Exception):
    """The model was refused; ``order_id`` is the order created for it, kept for the retry."""

    def __init__(self, order_id: uuid.UUID, cause: ApiError | IllegalTransition) -> None:
        super().__init__(str(cause))
        self.order_id = order_id
        self.cause = cause


async def order_with_model(request: Request, principal: Principal, alloy: str, idempotency_key: str,
                            order_id: str, data: bytes, filename: str) -> uuid.UUID:
    """Create the order (or reuse the one a failed upload left) and attach the model: the API's handlers."""
    db = request.app.state.db
    CreateOrder(alloy=alloy)  # type: ignore[arg-type]
    reuse = None
    if order_id and is_uuid(order_id):
        async with db.sessions() as db_session:
            row = await repository.get_owned_order(db_session, uuid.UUID(order_id), Owner.of(principal))
        if row is not None and row.alloy == alloy and S(row.status) in UPLOADABLE:
            reuse = row.id
    if reuse is None:
        reuse, _ = await handlers.create_order(db, principal, alloy, idempotency_key[:200] or None,
                                               request.headers.get("x-request-id"))
    try:
        await handlers.attach_model(db, request.app.state.storage, request.app.state.settings, principal, reuse,
                                    data, filename, request.app.state.parse_slots)
    except (ApiError, IllegalTransition) as error:
        raise UploadFailed(reuse, error) from error
    return reuse


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


