"""Calls between services over their HTTP APIs, with a timeout and the service token."""

from __future__ import annotations

from typing import Any

import httpx

from alexandrite.kit.errors import ApiError
from alexandrite.kit.settings import Service, Settings


class Peers:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.peer_timeout_seconds),
            headers={"Authorization": f"Service {settings.service_token}"},
        )

    async def post(self, service: Service, path: str, json: dict[str, Any]) -> dict[str, Any]:
        """POST to a peer; its 4xx errors are passed through, outages become 503."""
        url = self.settings.service_url(service) + path
        try:
            response = await self.client.post(url, json=json)
        except httpx.HTTPError as error:
            raise ApiError(503, "dependency_unavailable", f"The {service} service did not answer; try again.",
                           headers={"Retry-After": "5"}) from error
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
            response = await self.client.get(self.settings.service_url(service) + path, timeout=timeout)
        except httpx.HTTPError:
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
