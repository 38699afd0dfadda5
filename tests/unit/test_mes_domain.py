"""MES rules: queue estimates, operator actions, projection values, dashboard cursors."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from alexandrite.contracts.events import StatusChanged
from alexandrite.contracts.order_status import OrderStatus, check_transition, owner_of
from alexandrite.kit.errors import ApiError
from alexandrite.mes import domain, views
from alexandrite.mes.schemas import InternalCancel, ShipIn

S = OrderStatus


# --- estimates ------------------------------------------------------------------------------------

def test_average_of_finished_jobs_or_the_default() -> None:
    assert domain.average_seconds([], 2.0) == 2.0
    assert domain.average_seconds([None, None], 3.5) == 3.5
    assert domain.average_seconds([1000, 3000], 2.0) == pytest.approx(2.0)
    assert domain.average_seconds([500, None, 1500], 9.0) == pytest.approx(1.0)
    assert domain.average_seconds([-5, 4000], 1.0) == pytest.approx(4.0)  # nonsense durations ignored


def test_eta_is_position_times_average_over_workers() -> None:
    assert domain.eta_seconds(1, 2.0, 1) == 2.0
    assert domain.eta_seconds(5, 2.0, 1) == 10.0
    assert domain.eta_seconds(5, 2.0, 4) == 2.5
    assert domain.eta_seconds(3, 1.5, 0) == 4.5  # no consumer known: one assumed
    assert domain.eta_seconds(0, 2.0, 1) == 2.0  # a position is at least 1
    assert domain.eta_seconds(7, 1.0, 3) == 2.3  # rounded to a tenth


@given(position=st.integers(1, 10_000), average=st.floats(0, 600), consumers=st.integers(0, 64))
def test_eta_grows_with_position_and_shrinks_with_workers(position: int, average: float, consumers: int) -> None:
    eta = domain.eta_seconds(position, average, consumers)
    assert eta >= 0
    assert domain.eta_seconds(position + 1, average, consumers) >= eta
    assert domain.eta_seconds(position, average, consumers + 1) <= eta


def test_progress_of_queued_and_running_jobs() -> None:
    assert domain.progress(4, 2.0, 2) == {"queue_position": 4, "eta_seconds": 4.0}
    running = domain.progress(4, 2.0, 2, running_for=0.5)
    assert running == {"queue_position": 1, "eta_seconds": 1.5}
    overdue = domain.progress(1, 2.0, 1, running_for=30.0)
    assert overdue == {"queue_position": 1, "eta_seconds": 0.0}


def test_job_states() -> None:
    assert not domain.is_final("queued") and not domain.is_final("running")
    assert all(domain.is_final(s) for s in ("priced", "failed", "cancelled"))
    with pytest.raises(ValueError):
        domain.is_final("lost")


def test_job_message_round_trip_and_rejects_garbage() -> None:
    job = domain.PricingJobMessage(job_id=uuid.uuid4(), order_id=uuid.uuid4(), submit_seq=3,
                                   enqueued_at=datetime.now(UTC))
    assert domain.PricingJobMessage.model_validate_json(job.model_dump_json()) == job
    with pytest.raises(ValidationError):
        domain.PricingJobMessage.model_validate_json(b'{"job_id": "nope"}')
    with pytest.raises(ValidationError):
        domain.PricingJobMessage.model_validate({**job.model_dump(), "submit_seq": 0})


# --- operator actions ----------------------------------------------------------------------------

def test_operator_actions_are_production_steps_owned_by_mes() -> None:
    chain = [S.MANUFACTURING_APPROVED, S.MANUFACTURING_STARTED, S.MANUFACTURING_COMPLETED, S.PACKAGING, S.SHIPPED]
    assert [domain.OPERATOR_ACTIONS[a] for a in ("take", "complete", "package", "ship")] == chain[1:]
    for current, target in zip(chain, chain[1:], strict=False):
        assert owner_of(current) == domain.SERVICE
        check_transition(current, target, domain.SERVICE)


@pytest.mark.parametrize("value", ["TRK-123", "a", "1Z999AA10123456784", "x" * 64])
def test_tracking_numbers_accepted(value: str) -> None:
    assert domain.valid_tracking_number(value)
    assert ShipIn(tracking_number=value, carrier="DHL").tracking_number == value


@pytest.mark.parametrize("value", ["", "x" * 65, "TRK 123", "TRK_1", "трек", "a/b", "TRK-1\n"])
def test_tracking_numbers_rejected(value: str) -> None:
    assert not domain.valid_tracking_number(value)
    with pytest.raises(ValidationError):
        ShipIn(tracking_number=value, carrier="DHL")


def test_ship_body_needs_a_carrier_and_nothing_else() -> None:
    with pytest.raises(ValidationError):
        ShipIn(tracking_number="TRK-1", carrier="   ")
    with pytest.raises(ValidationError):
        ShipIn.model_validate({"tracking_number": "TRK-1", "carrier": "DHL", "extra": 1})
    assert ShipIn(tracking_number="TRK-1", carrier=" DHL ").carrier == "DHL"


def test_internal_cancel_accepts_only_shop_or_crm() -> None:
    assert InternalCancel(requested_by="shop", actor="customer:1").reason is None
    with pytest.raises(ValidationError):
        InternalCancel(requested_by="mes", actor="x")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        InternalCancel(requested_by="crm", actor="")


# --- projection -----------------------------------------------------------------------------------

MODEL = {"key": "models/ab/abc.stl", "filename": "ring.stl", "format": "stl_binary", "triangles": 10,
         "bytes": 684, "sha256": "ab" * 32}


def test_creation_values_from_the_initiated_event() -> None:
    t0 = datetime(2025, 3, 1, 12, 0)
    change = StatusChanged(status=S.INITIATED, actor="customer:1", at=t0, alloy="gold_585", created_at=t0,
                           owner={"kind": "partner", "id": "p1", "name": "Acme Jewels"})
    values = domain.creation_values(change)
    assert values == {"alloy": "gold_585", "owner_kind": "partner", "owner_name": "Acme Jewels",
                      "created_at": t0.replace(tzinfo=UTC)}


def test_projection_values_per_status() -> None:
    at = datetime.now(UTC)
    uploaded = domain.projection_values(StatusChanged(status=S.FILE_UPLOADED, actor="c", model=MODEL))
    assert uploaded["model"]["key"] == MODEL["key"]
    assert uploaded["quote"] is None and uploaded["failure"] is None and uploaded["progress"] is None
    submitted = domain.projection_values(StatusChanged(status=S.SUBMITTED, actor="c", model=MODEL, alloy="gold_750"))
    assert submitted["alloy"] == "gold_750" and "quote" not in submitted
    approved = domain.projection_values(StatusChanged(status=S.MANUFACTURING_APPROVED, actor="seller:bob", at=at,
                                                      quote={"total": 10}))
    assert approved == {"approved_at": at, "quote": {"total": 10}}
    cancelled = domain.projection_values(StatusChanged(status=S.CANCELLED, actor="c", reason="changed my mind"))
    assert cancelled == {"progress": None}


def test_quote_summary() -> None:
    assert domain.quote_summary(None) == (None, None)
    assert domain.quote_summary({"total": 812.4, "currency": "EUR"}) == (812.4, "EUR")


# --- cursors --------------------------------------------------------------------------------------

@given(
    created_at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    order_id=st.uuids(),
)
def test_cursor_round_trip(created_at: datetime, order_id: uuid.UUID) -> None:
    cursor = views.encode_cursor(created_at, order_id)
    assert views.decode_cursor(cursor) == (created_at, order_id)
    assert "=" not in cursor


@pytest.mark.parametrize("cursor", [
    "garbage!",
    "",
    base64.urlsafe_b64encode(b"[1, 2]").decode(),
    base64.urlsafe_b64encode(b'["2025-01-01T00:00:00", "not-a-uuid"]').decode(),
    base64.urlsafe_b64encode(b'["2025-01-01T00:00:00", "' + str(uuid.uuid4()).encode() + b'"]').decode(),  # naive
    base64.urlsafe_b64encode(b'{"a": 1}').decode(),
])
def test_bad_cursor_is_a_422(cursor: str) -> None:
    with pytest.raises(ApiError) as caught:
        views.decode_cursor(cursor)
    assert caught.value.status == 422 and caught.value.code == "invalid_cursor"
