"""Backpressure at submit: when the pricing backlog would not drain within the stage SLA.

Production (mes) knows the backlog: queued and running jobs, workers, average job time; its
``eta_seconds_for_new_job`` is how long a job submitted now would wait. The shop asks for it
through the peer client (breaker + short timeout), caches the answer a couple of seconds, and:
``reject`` answers 503 with ``Retry-After`` = the seconds until the backlog is back within the
SLA; ``accept_with_eta`` accepts and tells the ETA (header ``Pricing-ETA-Seconds``); ``off``
never asks. When mes cannot answer, submits are accepted (the queue is bounded anyway and the
order waits in the outbox) and ``alexandrite_backpressure_decisions_total{decision="unknown"}`` counts it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from alexandrite.kit.errors import ApiError
from alexandrite.kit.peers import Peers
from alexandrite.kit.settings import Settings

DECISIONS = Counter("alexandrite_backpressure_decisions_total", "Submit backpressure decisions",
                    ["decision"])  # accepted | rejected | accepted_late | unknown
QUEUE_PATH = "/api/v1/production/pricing/queue"
MAX_RETRY_AFTER = 3600


@dataclass
class PricingBacklog:
    peers: Peers
    settings: Settings
    _eta: float | None = None
    _checked_at: float = -math.inf

    async def eta_seconds(self) -> float | None:
        if time.monotonic() - self._checked_at < self.settings.pricing.backpressure_cache_seconds:
            return self._eta
        self._checked_at = time.monotonic()
        answer: dict[str, Any] | None = await self.peers.get_quick("mes", QUEUE_PATH, timeout=0.5)
        eta = answer.get("eta_seconds_for_new_job") if answer else None
        self._eta = float(eta) if isinstance(eta, (int, float)) else None
        return self._eta

    async def admit(self) -> float | None:
        """The expected pricing wait; raises 503 when it breaks the SLA in ``reject`` mode."""
        if self.settings.pricing.backpressure_mode == "off":
            return None
        eta = await self.eta_seconds()
        sla = self.settings.pricing.stage_sla_seconds
        if eta is None:
            DECISIONS.labels("unknown").inc()
            return None
        if eta <= sla:
            DECISIONS.labels("accepted").inc()
            return eta
        if self.settings.pricing.backpressure_mode == "accept_with_eta":
            DECISIONS.labels("accepted_late").inc()
            return eta
        DECISIONS.labels("rejected").inc()
        retry = min(max(math.ceil(eta - sla), 1), MAX_RETRY_AFTER)
        raise ApiError(503, "pricing_overloaded",
                       f"Pricing is busy: a model submitted now would wait about {round(eta)} s, more than the "
                       f"{round(sla)} s we promise. Submit again in {retry} s; the order keeps its model.",
                       details={"eta_seconds": round(eta, 1), "sla_seconds": sla},
                       headers={"Retry-After": str(retry)})
