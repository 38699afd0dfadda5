"""Schemathesis against all three services (real processes): every answer, valid request or not, conforms
to the published description: a documented status code, content type and headers, and a body that matches
the response schema (the Error body for every error), not only "no 5xx"."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
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
from tests.reliability.test_schemathesis import each_generated_answer

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
    failures: list[str] = []
    statuses: set[int] = set()

    def answer(label: str, mode: GenerationMode, case: schemathesis.Case, response: Any) -> None:
        statuses.add(response.status_code)
        try:
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as failure:  # one error naming every failed check
            failures.append(f"{label} [{mode.value}] -> {response.status_code}: {str(failure)[:400]}")

    each_generated_answer(platform, service, EXAMPLES, answer)
    assert any(s >= 400 for s in statuses) and any(s < 300 for s in statuses), statuses
    assert not failures, f"{len(failures)} non-conforming answers:\n" + "\n".join(failures[:8])
