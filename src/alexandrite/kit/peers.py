"""Calls between services over their HTTP APIs: a timeout, a breaker per peer, the service token."""

from __future__ import annotations

import math
from typing import Any

import httpx

from alexandrite.kit.breaker import BreakerOpen, breaker_from_settings
from alexandrite.kit.errors import ApiError
from alexandrite.kit.settings import SERVICES, Service, Settings


def _unavailable(service: str, retry_after: float = 5.0) -> ApiError:
    return ApiError(503, "dependency_unavailable", f"The {service} service did not answer; try again.",
                    headers={"Retry-After": str(max(math.ceil(retry_after), 1))})


class Peers:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.net.peer_timeout_seconds),
            headers={"Authorization": f"Service {settings.auth.service_token}"},
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )
        self.breakers = {service: breaker_from_settings(f"peer:{service}", settings) for service in SERVICES}

    async def _request(self, service: Service, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call through the peer's breaker: transport errors and 5xx count as failures."""
        breaker = self.breakers[service]
        try:
            breaker.before_call()
        except BreakerOpen as error:
            raise _unavailable(service, error.retry_after) from error
        try:
            response = await self.client.request(method, self.settings.service_url(service) + path, **kwargs)
        except httpx.HTTPError as error:
            breaker.record_failure()
            raise _unavailable(service) from error
        if response.status_code >= 500:
            breaker.record_failure()
        else:
            breaker.record_success()
        return response

    async def post(self, service: Service, path: str, json: dict[str, Any]) -> dict[str, Any]:
        """POST to a peer; its 4xx errors are passed through, outages become 503."""
        response = await self._request(service, "POST", path, json=json)
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = None
        if response.status_code >= 500 or not isinstance(body, dict):
            raise ApiError(503, "dependency_unavailable", f"The {service} service failed; try again.",
                           headers={"Retry-After": "5"})
        if response.status_code >= 400:
            error = body.get("error", {})
            raise ApiError(response.status_code, error.get("code", "error"), error.get("message", ""),
                           details=error.get("details"))
        return body

    async def get_quick(self, service: Service, path: str, timeout: float = 0.3) -> dict[str, Any] | None:
        """A best-effort read for enrichment: None on any failure, never an error to the caller."""
        try:
            response = await self._request(service, "GET", path, timeout=timeout)
        except ApiError:
            return None
        if response.status_code != 200:
            return None
        try:
            body = response.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def close(self) -> None:
        await self.client.aclose()
