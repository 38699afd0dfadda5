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
        body = response.json() if response.content else {}
        if response.status_code >= 500:
            raise ApiError(503, "dependency_unavailable", f"The {service} service failed; try again.",
                           headers={"Retry-After": "5"})
        if response.status_code >= 400:
            error = body.get("error", {})
            raise ApiError(response.status_code, error.get("code", "error"), error.get("message", ""),
                           details=error.get("details"))
        return body

    async def close(self) -> None:
        await self.client.aclose()
