"""Stage SLA rules: overdue checks and the new shipping estimate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alexandrite.kit.setting_groups import DEFAULT_SLA_SECONDS
from alexandrite.kit.settings import Settings
from alexandrite.mes.sla import StageSlas, is_overdue
from alexandrite.mes.watchdog import slas_from

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HOUR = 3600.0


def test_overdue_only_past_the_sla() -> None:
    assert not is_overdue(NOW - timedelta(seconds=30), 30, NOW)
    assert is_overdue(NOW - timedelta(seconds=31), 30, NOW)


def test_new_eta_adds_the_late_stage_again_and_every_stage_ahead() -> None:
    slas = StageSlas({"PRICE_CALCULATED": 1 * HOUR, "MANUFACTURING_APPROVED": 2 * HOUR,
                      "MANUFACTURING_STARTED": 3 * HOUR, "PACKAGING": 4 * HOUR, "SHIPPED": 100 * HOUR}, 10 * HOUR)
    assert slas.new_eta("PRICE_CALCULATED", NOW) == NOW + timedelta(hours=1 + 2 + 3 + 4)
    assert slas.new_eta("PACKAGING", NOW) == NOW + timedelta(hours=4)
    assert slas.new_eta("SHIPPED", NOW) == NOW + timedelta(hours=100)  # already shipped: only its own SLA
    assert slas.for_stage("DELIVERY") == 10 * HOUR and slas.for_stage("CLOSED") is None


def test_defaults_come_from_settings() -> None:
    slas = slas_from(Settings(_env_file=None, promised_delivery_days=21))  # type: ignore[call-arg]
    assert slas.per_status == DEFAULT_SLA_SECONDS and slas.delivery_seconds == 21 * 86400
    assert DEFAULT_SLA_SECONDS["PRICE_CALCULATING"] == 1800 and DEFAULT_SLA_SECONDS["MANUFACTURING_APPROVED"] == 2 * 86400
