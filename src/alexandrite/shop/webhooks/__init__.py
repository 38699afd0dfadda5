"""Partner webhooks: endpoints (registration, allowed URLs), the delivery queue written with each order
change, signatures, the sender (:mod:`.dispatch`) and the partner API (:mod:`.api`)."""

from alexandrite.shop.webhooks.deliveries import (
    DISPATCHER_WAKEUP,
    STATES,
    delivery_cte,
    enqueue,
    list_deliveries,
    replay,
    status_payload,
)
from alexandrite.shop.webhooks.endpoints import check_url, check_url_resolves, endpoint, register, unregister
from alexandrite.shop.webhooks.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    new_secret,
    sign,
    verify,
)

__all__ = [
    "DELIVERY_HEADER", "DISPATCHER_WAKEUP", "EVENT_HEADER", "SIGNATURE_HEADER", "STATES", "TIMESTAMP_HEADER",
    "check_url", "check_url_resolves", "delivery_cte", "endpoint", "enqueue", "list_deliveries", "new_secret",
    "register", "replay", "sign", "status_payload", "unregister", "verify",
]
