"""The transition table: every legal move allowed for its owner, everything else refused."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alexandrite.contracts.order_status import (
    CANCELLABLE,
    OWNER,
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    OrderStatus,
    check_transition,
    owner_of,
)

S = OrderStatus
HAPPY_PATH = [
    (S.INITIATED, S.FILE_UPLOADED, "shop"),
    (S.FILE_UPLOADED, S.SUBMITTED, "shop"),
    (S.SUBMITTED, S.PRICE_CALCULATING, "mes"),
    (S.PRICE_CALCULATING, S.PRICE_CALCULATED, "mes"),
    (S.PRICE_CALCULATED, S.MANUFACTURING_APPROVED, "crm"),
    (S.MANUFACTURING_APPROVED, S.MANUFACTURING_STARTED, "mes"),
    (S.MANUFACTURING_STARTED, S.MANUFACTURING_COMPLETED, "mes"),
    (S.MANUFACTURING_COMPLETED, S.PACKAGING, "mes"),
    (S.PACKAGING, S.SHIPPED, "mes"),
    (S.SHIPPED, S.CLOSED, "crm"),
]


@pytest.mark.parametrize(("current", "target", "service"), HAPPY_PATH)
def test_happy_path_is_allowed_for_its_setter(current: S, target: S, service: str) -> None:
    check_transition(current, target, service)


@pytest.mark.parametrize(("current", "target", "service"), HAPPY_PATH)
def test_other_services_cannot_make_a_transition_they_do_not_own(current: S, target: S, service: str) -> None:
    for other in {"shop", "crm", "mes"} - {service, OWNER[current]}:
        with pytest.raises(IllegalTransition, match="may not move"):
            check_transition(current, target, other)


def test_cancel_allowed_before_manufacturing_started_only() -> None:
    for status in S:
        if status in CANCELLABLE:
            check_transition(status, S.CANCELLED, "shop")
            check_transition(status, S.CANCELLED, "crm")
        else:
            with pytest.raises(IllegalTransition):
                check_transition(status, S.CANCELLED, "shop")
    with pytest.raises(IllegalTransition, match="can no longer be cancelled"):
        check_transition(S.MANUFACTURING_STARTED, S.CANCELLED, "crm")


def test_terminal_statuses_never_change() -> None:
    for status, target in itertools.product(TERMINAL, S):
        with pytest.raises(IllegalTransition, match="can no longer change"):
            check_transition(status, target, OWNER[status])


def test_skipping_a_stage_is_refused_with_a_clear_message() -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(S.PRICE_CALCULATED, S.SHIPPED, "mes")
    assert str(info.value) == "an order cannot go from PRICE_CALCULATED to SHIPPED"
    assert info.value.current is S.PRICE_CALCULATED and info.value.target is S.SHIPPED


def test_reupload_after_failed_pricing_and_model_replacement() -> None:
    check_transition(S.PRICE_CALCULATION_FAILED, S.FILE_UPLOADED, "shop")
    check_transition(S.FILE_UPLOADED, S.FILE_UPLOADED, "shop")


def test_every_status_has_one_owner_and_every_edge_starts_at_an_owned_status() -> None:
    assert set(OWNER) == set(S)
    for current, _target in TRANSITIONS:
        assert owner_of(current) in {"shop", "crm", "mes"}
    # Apart from cancellation, whoever may make a move is exactly the owner of where it starts:
    # this is what makes an order single-writer.
    for (current, target), setters in TRANSITIONS.items():
        if target is not S.CANCELLED:
            assert setters == {OWNER[current]}


@given(st.sampled_from(list(S)), st.sampled_from(list(S)), st.sampled_from(["shop", "crm", "mes", "x"]))
def test_check_agrees_with_the_table(current: S, target: S, service: str) -> None:
    allowed = (current, target) in TRANSITIONS and (
        service in TRANSITIONS[(current, target)] or service == OWNER[current]
    )
    try:
        check_transition(current, target, service)
    except IllegalTransition:
        assert not allowed
    else:
        assert allowed
