"""Schemathesis against all three services (real processes): every answer, valid request or not, conforms
to the published description: a documented status code, content type and headers, and a body that matches
the response schema (the Error body for every error), not only "no 5xx"."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from alexandrite.kit.settings import Settings
from tests.e2e.processes import Platform, api_services
from tests.reliability.test_schemathesis import _credentials, _who

pytestmark = pytest.mark.e2e
EXAMPLES = 6  # per operation and generation mode
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def platform(settings: Settings, test_env: dict[str, str]) -> Iterator[Platform]:
    with api_services(settings, test_env, "conformance") as running:
        yield running


@pytest.mark.parametrize("service", ["shop", "crm", "mes"])
def test_every_answer_conforms_to_the_published_schema(platform: Platform, service: str) -> None:
    base = platform.settings.service_url(service)  # type: ignore[arg-type]
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    credentials = _credentials(platform)
    failures: list[str] = []
    calls = 0
    statuses: set[int] = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        headers = credentials[_who(operation.path)]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                                 suppress_health_check=list(HealthCheck))
            def run(case: schemathesis.Case) -> None:
                nonlocal calls
                calls += 1
                response = case.call(base_url=base, headers={**(case.headers or {}), **headers}, timeout=30)
                statuses.add(response.status_code)
                try:
                    case.validate_response(response, checks=CHECKS)
                except (Exception, BaseExceptionGroup) as failure:  # one error naming every failed check
                    failures.append(f"{operation.label} [{mode.value}] -> {response.status_code}: "
                                    f"{str(failure)[:400]}")

            try:
                run()
            except Unsatisfiable:  # nothing to make negative (no parameters or body)
                pass
    assert calls > 0 and any(s >= 400 for s in statuses) and any(s < 300 for s in statuses), statuses
    assert not failures, f"{len(failures)} non-conforming answers:\n" + "\n".join(failures[:8])
