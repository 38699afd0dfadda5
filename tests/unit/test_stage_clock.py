"""The stage clock's arithmetic and words (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alexandrite.orders.stage_clock import NO_SLA_SECONDS, clock, due_at, duration_words, parse_bool, sla_seconds

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_late_by_is_time_in_stage_past_the_sla() -> None:
    since = NOW - timedelta(days=2, hours=3, minutes=20)
    assert clock(since, 2 * 86400, NOW) == {"time_in_stage_seconds": 2 * 86400 + 12000, "late_by_seconds": 12000,
                                            "late": True}
    assert clock(NOW - timedelta(hours=1), 2 * 86400, NOW)["late"] is False
    assert clock(NOW - timedelta(days=9), None, NOW) == {"time_in_stage_seconds": 9 * 86400, "late_by_seconds": 0,
                                                         "late": False}
    assert clock(NOW + timedelta(seconds=5), 60, NOW)["time_in_stage_seconds"] == 0  # clock skew: never negative


def test_due_and_sla_lookup() -> None:
    assert due_at(NOW, 60) == NOW + timedelta(seconds=60)
    assert due_at(NOW, None) == NOW + timedelta(seconds=NO_SLA_SECONDS)
    assert sla_seconds({"PACKAGING": 86400}, "PACKAGING") == 86400.0
    assert sla_seconds({"PACKAGING": 86400}, "SHIPPED") is None


@pytest.mark.parametrize(("seconds", "words"), [
    (0, "0 s"), (45, "45 s"), (60, "1 min"), (12 * 60 + 59, "12 min"), (3 * 3600, "3 h"),
    (3 * 3600 + 20 * 60, "3 h 20 min"), (2 * 86400, "2 d"), (2 * 86400 + 4 * 3600 + 59, "2 d 4 h"),
    (2 * 86400 + 40 * 60, "2 d 40 min"), (-5, "0 s"),
])
def test_duration_words(seconds: float, words: str) -> None:
    assert duration_words(seconds) == words


def test_parse_bool() -> None:
    assert parse_bool("true", "late") is True and parse_bool("0", "late") is False and parse_bool(None, "late") is None
    with pytest.raises(ValueError, match="late must be true or false"):
        parse_bool("maybe", "late")
