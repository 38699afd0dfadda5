"""A local SMTP sink for development and tests: accepts every message, keeps it, sends nothing.

``alexandrite smtp-sink --port 8025 --dir var/mail`` writes each message as an ``.eml`` file;
tests start :class:`SmtpSink` in-process and read :attr:`SmtpSink.messages`.
"""

from __future__ import annotations

import threading
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class _Collector:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        data = envelope.original_content or envelope.content
        message = message_from_bytes(data, policy=policy.default)
        with self.lock:
            self.messages.append(message)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / f"{uuid.uuid4().hex}.eml").write_bytes(data)
        return "250 Message accepted for delivery"


class SmtpSink:
    def __init__(self, host: str = "127.0.0.1", port: int = 8025, directory: Path | None = None) -> None:
        self._collector = _Collector(directory)
        self._controller = Controller(self._collector, hostname=host, port=port)

    @property
    def messages(self) -> list[EmailMessage]:
        with self._collector.lock:
            return list(self._collector.messages)

    def start(self) -> "SmtpSink":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> "SmtpSink":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
