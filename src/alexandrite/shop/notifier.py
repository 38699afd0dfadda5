"""Sends the shop's notification outbox by SMTP e-mail.

Rows are claimed with ``FOR UPDATE SKIP LOCKED`` (any number of shop replicas), sent, and
marked sent in the same transaction; a failed send is retried with backoff. A crash between
the SMTP answer and the commit can resend one message: its ``Message-ID`` is the row's id,
so a mail system can drop the duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy import func, select, update

from alexandrite.contracts.events import utcnow
from alexandrite.kit import metrics
from alexandrite.kit.db import Database, UnitOfWork
from alexandrite.kit.settings import Settings
from alexandrite.shop.tables import notifications

log = structlog.get_logger(__name__)
N = notifications
MAX_BACKOFF_SECONDS = 3600.0


def build_email(settings: Settings, row: Any) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail.smtp_sender
    message["To"] = row.recipient
    message["Subject"] = row.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<{row.id}@alexandrite>"
    message["X-Alexandrite-Order"] = str(row.order_id)
    message["X-Alexandrite-Notice"] = row.kind
    message.set_content(row.body)
    return message


def send_email(settings: Settings, message: EmailMessage) -> None:
    mail = settings.mail
    with smtplib.SMTP(mail.smtp_host, mail.smtp_port, timeout=mail.smtp_timeout_seconds) as smtp:
        smtp.send_message(message)


def _counting(counter: Counter, channel: str, kind: str) -> Callable[[], None]:
    return lambda: counter.labels(channel, kind).inc()


async def send_pending(db: Database, settings: Settings, *, batch: int = 20) -> int:
    """Send one batch of due notifications; returns how many were delivered."""
    sent = 0
    async with UnitOfWork(db) as uow:
        rows = (
            await uow.session.execute(
                select(N).where(N.c.sent_at.is_(None), N.c.next_attempt_at <= func.now())
                .order_by(N.c.next_attempt_at).limit(batch).with_for_update(skip_locked=True)
            )
        ).all()
        for row in rows:
            kind = row.kind.split(":", 1)[0]
            try:
                await asyncio.to_thread(send_email, settings, build_email(settings, row))
            except (OSError, smtplib.SMTPException) as error:
                backoff = min(2.0 ** row.attempts * settings.mail.notifier_interval_seconds, MAX_BACKOFF_SECONDS)
                await uow.session.execute(
                    update(N).where(N.c.id == row.id).values(
                        attempts=N.c.attempts + 1, last_error=repr(error)[:500],
                        next_attempt_at=utcnow() + timedelta(seconds=backoff)))
                uow.after_commit(_counting(metrics.NOTIFICATION_FAILURES, row.channel, kind))
                log.warning("notification_failed", order_id=str(row.order_id), kind=row.kind,
                            attempt=row.attempts + 1, error=repr(error)[:200])
                continue
            await uow.session.execute(
                update(N).where(N.c.id == row.id).values(sent_at=utcnow(), attempts=N.c.attempts + 1))
            uow.after_commit(_counting(metrics.NOTIFICATIONS_SENT, row.channel, kind))
            log.info("notification_sent", order_id=str(row.order_id), kind=row.kind, channel=row.channel)
            sent += 1
        await uow.commit()
    return sent


async def backlog(db: Database) -> int:
    async with db.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(N).where(N.c.sent_at.is_(None))))
                   .scalar_one())


async def run_notifier(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            while await send_pending(db, settings):
                pass
            metrics.NOTIFICATION_BACKLOG.set(await backlog(db))
        except Exception as error:  # database away: try again at the next interval
            log.warning("notifier_failed", error=repr(error)[:300])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.mail.notifier_interval_seconds)
