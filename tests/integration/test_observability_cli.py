"""The watchdog and SMTP sink commands, including bad input."""

from __future__ import annotations

import http.server
import json
import signal
import smtplib
import subprocess
import sys
import threading
import time
import urllib.request
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


def test_watchdog_process_serves_its_gauge(test_env: dict[str, str]) -> None:
    port = free_port()
    env = {**test_env, "ALEX_WATCHDOG_INTERVAL_SECONDS": "0.2"}
    process = subprocess.Popen([sys.executable, "-m", "alexandrite", "watchdog", "--metrics-port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        body = ""
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                body = ""
            if 'alexandrite_sla_watchdog_runs_total{outcome="ok"}' in body:
                break
            time.sleep(0.1)
        assert 'alexandrite_orders_past_sla{stage="DELIVERY"}' in body
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, process.stderr.read() if process.stderr else ""


def test_otlp_export_by_setting(test_env: dict[str, str]) -> None:
    """ALEX_TRACING=otlp sends spans as OTLP/HTTP protobuf to ALEX_OTLP_ENDPOINT (a local stand-in here)."""
    received: list[tuple[str, str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((self.path, self.headers["content-type"], body))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    script = (
        "from alexandrite.kit.settings import get_settings\n"
        "from alexandrite.kit import tracing\n"
        "tracing.configure_tracing('shop', get_settings())\n"
        "with tracing.message_span('shop.order.submitted publish', tracing.SpanKind.PRODUCER, {}):\n"
        "    assert tracing.trace_headers()['traceparent']\n"
        "tracing.shutdown_tracing()\n"
    )
    env = {**test_env, "ALEX_TRACING": "otlp",
           "ALEX_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}/v1/traces"}
    try:
        result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert result.returncode == 0, result.stderr
    assert received and received[0][0] == "/v1/traces" and received[0][1] == "application/x-protobuf"
    assert b"shop.order.submitted publish" in received[0][2] and b"shop" in received[0][2]
