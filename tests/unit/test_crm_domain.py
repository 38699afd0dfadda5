"""CRM pure rules: search parsing, date filters, cursors, carrier signatures, projection values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alexandrite.contracts.events import StatusChanged
from alexandrite.contracts.order_status import OrderStatus
from alexandrite.crm import views
from alexandrite.crm.domain import (
    BadFilter,
    carrier_actor,
    carrier_signature,
    created_range,
    delivery_time,
    like_pattern,
    parse_search,
    projection_values,
    quote_total,
    verify_carrier_signature,
)
from alexandrite.kit.errors import ApiError

ORDER = uuid.UUID("3f2a9c1e-7b4d-4e8a-9f00-123456789abc")


# --- search ----------------------------------------------------------------------------------------

def test_full_uuid_matches_exactly_that_id() -> None:
    terms = parse_search(str(ORDER))
    assert terms.id_range == (ORDER, ORDER)
    assert str(ORDER) in terms.tracking_numbers  # a tracking number could look like anything
    assert terms.name_fragment == str(ORDER)


def test_uuid_in_upper_case_and_without_dashes() -> None:
    assert parse_search(str(ORDER).upper()).id_range == (ORDER, ORDER)
    assert parse_search(ORDER.hex).id_range == (ORDER, ORDER)


@pytest.mark.parametrize("prefix", ["3f2a9c1e", "3f2a9c1e-7b", "3F2A9C1E7B4D", " 3f2a9c1e-7b4d-4e8a "])
def test_id_prefix_of_eight_or_more_hex_digits_is_a_range_containing_the_order(prefix: str) -> None:
    terms = parse_search(prefix)
    assert terms.id_range is not None
    low, high = terms.id_range
    assert low <= ORDER <= high
    digits = prefix.strip().lower().replace("-", "")
    assert low.hex.startswith(digits) and high.hex.startswith(digits)
    assert low.hex == digits.ljust(32, "0") and high.hex == digits.ljust(32, "f")


@pytest.mark.parametrize("query", ["3f2a9c1", "abc", "3f2a9c1x", "3f2a-9c1e", "3f2a9c1e--7b",
                                   "Jane Smith", "TRK-3F2A9C1E", "3f2a9c1e-7b4d-4e8a-9f00-123456789abcd"])
def test_not_an_id_prefix(query: str) -> None:
    assert parse_search(query).id_range is None


def test_tracking_number_and_name_parts() -> None:
    terms = parse_search("  trk-00af  ")
    assert terms.text == "trk-00af"
    assert terms.tracking_numbers == ("trk-00af", "TRK-00AF")
    assert terms.name_fragment == "trk-00af"
    assert parse_search("TRK-1").tracking_numbers == ("TRK-1",)  # no duplicate when already upper case
    name = parse_search("Anna-Maria O'Neil")
    assert name.id_range is None and name.name_fragment == "anna-maria o'neil"


@given(st.uuids())
def test_every_prefix_of_a_uuid_finds_it(ident: uuid.UUID) -> None:
    text = str(ident)
    for end in range(8, len(text) + 1):
        if text[end - 1] == "-":
            continue
        terms = parse_search(text[:end])
        assert terms.id_range is not None, text[:end]
        assert terms.id_range[0] <= ident <= terms.id_range[1]


def test_like_pattern_takes_wildcards_literally() -> None:
    assert like_pattern("50%_off\\") == "%50\\%\\_off\\\\%"
    assert like_pattern("anna") == "%anna%"


# --- date filters ------------------------------------------------------------------------------------

def test_dates_and_datetimes() -> None:
    r = created_range("2025-03-01", "2025-03-31")
    assert r.start == datetime(2025, 3, 1, tzinfo=UTC)
    assert r.end == datetime(2025, 4, 1, tzinfo=UTC)  # a bare "to" date includes its whole day
    r = created_range("2025-03-01T10:00:00+02:00", "2025-03-01T12:00:00Z")
    assert r.start == datetime(2025, 3, 1, 8, tzinfo=UTC)
    assert r.end == datetime(2025, 3, 1, 12, tzinfo=UTC) + timedelta(microseconds=1)  # inclusive
    naive = created_range("2025-03-01T10:00:00", None)
    assert naive.start == datetime(2025, 3, 1, 10, tzinfo=UTC) and naive.end is None
    # "+02:00" sent unencoded in a query string arrives as " 02:00".
    assert created_range("2025-03-01T10:00:00 02:00", None).start == datetime(
        2025, 3, 1, 10, tzinfo=timezone(timedelta(hours=2)))
    assert created_range(None, None).start is None


@pytest.mark.parametrize(("start", "end", "field"), [
    ("yesterday", None, "created_from"),
    ("2025-13-01", None, "created_from"),
    (None, "2025-02-30", "created_to"),
    (None, "01/02/2025", "created_to"),
    ("2025-03-02", "2025-03-01", "created_to"),
])
def test_bad_dates_name_the_field(start: str | None, end: str | None, field: str) -> None:
    with pytest.raises(BadFilter) as caught:
        created_range(start, end)
    assert caught.value.field == field and caught.value.message


# --- cursors ----------------------------------------------------------------------------------------

@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
       st.uuids())
def test_cursor_round_trip(created_at: datetime, ident: uuid.UUID) -> None:
    cursor = views.encode_cursor(created_at, ident)
    assert views.decode_cursor(cursor) == (created_at, ident)
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor  # safe in a query string


def test_cursor_keeps_the_offset() -> None:
    at = datetime(2025, 5, 1, 12, 30, 0, 123456, tzinfo=timezone(timedelta(hours=3)))
    assert views.decode_cursor(views.encode_cursor(at, ORDER))[0] == at


@pytest.mark.parametrize("cursor", ["nonsense", "!!!", "W10", "WyJ4IiwieSJd",
                                    # a naive timestamp is not one we issue
                                    views.encode_cursor(datetime(2025, 1, 1), ORDER)])
def test_bad_cursor_is_422(cursor: str) -> None:
    with pytest.raises(ApiError) as caught:
        views.decode_cursor(cursor)
    assert caught.value.status == 422 and caught.value.code == "invalid_cursor"


# --- carrier webhook ----------------------------------------------------------------------------------

def test_signature_verification() -> None:
    body = b'{"tracking_number":"TRK-1","event":"delivered"}'
    header = carrier_signature("s3cret", body)
    assert header.startswith("sha256=") and len(header) == len("sha256=") + 64
    assert verify_carrier_signature("s3cret", body, header)
    assert verify_carrier_signature("s3cret", body, "SHA256=" + header[7:].upper())  # hex case-insensitive
    assert not verify_carrier_signature("other", body, header)
    assert not verify_carrier_signature("s3cret", body + b" ", header)  # any change to the body
    assert not verify_carrier_signature("s3cret", body, None)
    assert not verify_carrier_signature("s3cret", body, "")
    assert not verify_carrier_signature("s3cret", body, header[7:])  # scheme missing
    assert not verify_carrier_signature("s3cret", body, "sha1=" + header[7:])
    assert not verify_carrier_signature("s3cret", body, "sha256=")
    assert not verify_carrier_signature("s3cret", body, "sha256=zz" + header[9:])
    assert not verify_carrier_signature("s3cret", body, "sha256=ünïcode")
    assert not verify_carrier_signature("", body, carrier_signature("", body))  # no secret: refuse all


def test_carrier_actor_and_delivery_time() -> None:
    assert carrier_actor("dhl") == "carrier:dhl"
    assert carrier_actor(None) == carrier_actor("  ") == "carrier:webhook"
    now = datetime(2025, 5, 10, 12, tzinfo=UTC)
    shipped = datetime(2025, 5, 8, tzinfo=UTC)
    assert delivery_time(datetime(2025, 5, 9, tzinfo=UTC), shipped, now) == datetime(2025, 5, 9, tzinfo=UTC)
    assert delivery_time(datetime(2030, 1, 1, tzinfo=UTC), shipped, now) == now  # never in the future
    assert delivery_time(datetime(2020, 1, 1, tzinfo=UTC), shipped, now) == shipped  # never before shipping
    assert delivery_time(datetime(2025, 5, 9), None, now) == datetime(2025, 5, 9, tzinfo=UTC)


# --- projection ----------------------------------------------------------------------------------------

def test_quote_total() -> None:
    assert quote_total({"total": 1234.5, "currency": "EUR"}) == (Decimal("1234.50"), "EUR")
    assert quote_total({"total": "99.999", "currency": "EUR"}) == (Decimal("100.00"), "EUR")
    assert quote_total({"currency": "EUR"}) == (None, "EUR")
    assert quote_total({"total": "n/a"}) == (None, None)
    assert quote_total({"total": True}) == (None, None)
    assert quote_total({"total": "NaN"}) == (None, None)
    assert quote_total({"total": 1e12}) == (None, None)  # beyond numeric(12, 2)
    assert quote_total(None) == (None, None)


def test_projection_values_per_status() -> None:
    at = datetime(2025, 1, 1, tzinfo=UTC)
    priced = projection_values(StatusChanged(status=OrderStatus.PRICE_CALCULATED, actor="mes:pricing", at=at,
                                             quote={"total": 420.1, "currency": "EUR", "breakdown": {}}))
    assert priced["total"] == Decimal("420.10") and priced["currency"] == "EUR"
    assert priced["quote"]["total"] == 420.1 and priced["failure"] is None
    failed = projection_values(StatusChanged(status=OrderStatus.PRICE_CALCULATION_FAILED, actor="mes:pricing",
                                             at=at, failure={"code": "not_watertight", "message": "holes"}))
    assert failed["failure"] == {"code": "not_watertight", "message": "holes"} and failed["total"] is None
    shipped = projection_values(StatusChanged(status=OrderStatus.SHIPPED, actor="operator:bob", at=at,
                                              tracking_number="TRK-1", carrier="dhl"))
    assert shipped == {"tracking_number": "TRK-1", "carrier": "dhl"}
    cancelled = projection_values(StatusChanged(status=OrderStatus.CANCELLED, actor="customer:1", at=at,
                                                reason="changed my mind"))
    assert cancelled == {"cancel_reason": "changed my mind"}
    reuploaded = projection_values(StatusChanged(
        status=OrderStatus.FILE_UPLOADED, actor="customer:1", at=at,
        model={"key": "k", "format": "stl_binary", "triangles": 10, "bytes": 584, "sha256": "0" * 64}))
    assert reuploaded["model"]["triangles"] == 10
    assert reuploaded["quote"] is None and reuploaded["total"] is None and reuploaded["failure"] is None
