"""Schemathesis against every service's OpenAPI schema, real processes: no input makes a server error."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from alexandrite.kit.security import Principal
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import issue_token
from tests.e2e.processes import Platform, api_services

pytestmark = pytest.mark.e2e
EXAMPLES = 8  # per operation and generation mode: ~1 minute for all three services


@pytest.fixture(scope="module")
def platform(settings: Settings, test_env: dict[str, str]) -> Iterator[Platform]:
    with api_services(settings, test_env, "schemathesis") as running:
        yield running


def _credentials(platform: Platform) -> dict[str, dict[str, str]]:
    settings = platform.settings
    shop = settings.net.shop_url
    email = f"fuzz-{uuid.uuid4().hex[:8]}@example.test"
    httpx.post(f"{shop}/api/v1/auth/signup", json={"email": email, "password": "fuzz-pass-1", "name": "Fuzz"})
    token = httpx.post(f"{shop}/api/v1/auth/token", json={"email": email, "password": "fuzz-pass-1"}).json()
    partner_key = _partner_key(platform)

    def staff(role: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + issue_token(settings, Principal(role=role, subject=f"fuzz-{role}",
                                                                                       name=f"fuzz-{role}"), 3600)}

    return {"customer": {"Authorization": f"Bearer {token['access_token']}"}, "partner": {"X-API-Key": partner_key},
            "seller": staff("seller"), "operator": staff("operator"), "admin": staff("admin"),
            "service": {"Authorization": f"Service {settings.auth.service_token}"}}


def _partner_key(platform: Platform) -> str:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "alexandrite", "partner", "create", f"fuzz-{uuid.uuid4().hex[:6]}"],
                         env=platform.env, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip().splitlines()[-1]


def _who(path: str) -> str:
    if path.startswith("/internal/"):
        return "service"
    if path.startswith("/api/v1/webhook"):
        return "partner"
    if path.startswith("/api/v1/crm"):
        return "seller"
    if path.startswith("/api/v1/production"):
        return "operator"
    return "customer"


def each_generated_answer(platform: Platform, service: str, examples: int,
                          answer: Callable[[str, GenerationMode, schemathesis.Case, Any], None]) -> None:
    """Every operation of ``service``'s published schema, with generated valid and invalid requests sent
    to the running service as its role would send them: ``answer(operation, mode, case, response)``."""
    base = platform.settings.service_url(service)  # type: ignore[arg-type]
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    credentials = _credentials(platform)
    for result in schema.get_all_operations():
        operation = result.ok()
        headers = credentials[_who(operation.path)]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _sender(operation, mode, base, headers, examples, answer)()
            except Unsatisfiable:  # nothing to make negative (no parameters or body)
                pass


def _sender(operation: Any, mode: GenerationMode, base: str, headers: dict[str, str], examples: int,
            answer: Callable[[str, GenerationMode, schemathesis.Case, Any], None]) -> Callable[[], None]:
    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis_settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(HealthCheck))
    def send(case: schemathesis.Case) -> None:
        answer(operation.label, mode, case,
               case.call(base_url=base, headers={**(case.headers or {}), **headers}, timeout=30))

    return send


@pytest.mark.parametrize("service", ["shop", "crm", "mes"])
def test_no_server_errors_for_any_generated_request(platform: Platform, service: str) -> None:
    failures: list[str] = []
    calls = 0

    def answer(label: str, mode: GenerationMode, case: schemathesis.Case, response: Any) -> None:
        nonlocal calls
        calls += 1
        if response.status_code >= 500:
            failures.append(f"{label} -> {response.status_code}: {response.text[:200]} "
                            f"[{case.path_parameters} {case.query} {str(case.body)[:100]}]")

    each_generated_answer(platform, service, EXAMPLES, answer)
    assert calls > 0
    assert not failures, "\n".join(failures[:10])
