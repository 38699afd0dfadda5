"""The watchdog and SMTP sink commands, including bad input."""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

from tests.e2e.processes import free_port


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alexandrite", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_watchdog_once_and_bad_sla_settings(test_env: dict[str, str]) -> None:
    once = run(test_env, "watchdog", "--once")
    assert once.returncode == 0, once.stderr
    assert "new delay(s) reported" in once.stdout
    bad = run({**test_env, "ALEX_SLA_SECONDS": json.dumps({"PRICING": 5})}, "watchdog", "--once")
    assert bad.returncode == 2 and "unknown statuses: PRICING" in bad.stderr
    assert run(test_env, "smtp-sink", "--port", "many").returncode == 2


def test_smtp_sink_keeps_every_message(test_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "alexandrite", "smtp-sink", "--port", str(port), "--dir",
                             str(tmp_path)], env=test_env, stdout=subprocess.PIPE, text=True)
    try:
        assert "SMTP sink on" in (sink.stdout.readline() if sink.stdout else "")
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@example.test", "b@example.test", "hello"
        message.set_content("body")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.send_message(message)
        for _ in range(50):
            files = list(tmp_path.glob("*.eml"))
            if files:
                break
            time.sleep(0.1)
        assert len(files) == 1 and b"Subject: hello" in files[0].read_bytes()
    finally:
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(timeout=20) == 0
