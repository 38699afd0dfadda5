"""The signature checks in docs/partners.md accept what the shop signs and refuse anything else."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from alexandrite.shop.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "partners.md"
SECRET = "whsec_test-secret"
BODY = b'{"delivery_id":"d1","type":"order.status_changed","order_id":"o1","seq":5,"status":"PRICE_CALCULATED"}'


def _block(language: str, containing: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), flags=re.S)
    return next(b for b in blocks if containing in b)


def _headers(timestamp: int, body: bytes = BODY) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(SECRET, timestamp, body)}


def test_the_python_check() -> None:
    namespace: dict[str, object] = {}
    exec(_block("python", "def verify"), namespace)  # the guide's code as a partner copies it
    verify = namespace["verify"]
    now = int(time.time())
    assert verify(SECRET, _headers(now), BODY)  # type: ignore[operator]
    assert not verify(SECRET, _headers(now), BODY + b" ")  # type: ignore[operator]
    assert not verify("another secret", _headers(now), BODY)  # type: ignore[operator]
    assert not verify(SECRET, _headers(now - 3600), BODY)  # type: ignore[operator]


def test_the_javascript_check(tmp_path: Path) -> None:
    now = int(time.time())
    cases = [(_headers(now), BODY, True), (_headers(now), BODY + b" ", False), (_headers(now - 3600), BODY, False)]
    script = _block("javascript", "function verify") + "\n" + "\n".join(
        f"console.log(verify({json.dumps(SECRET)}, {json.dumps({k.lower(): v for k, v in h.items()})}, "
        f"Buffer.from({json.dumps(body.decode())})));" for h, body, _ in cases)
    (tmp_path / "verify.js").write_text(script)
    out = subprocess.run(["node", str(tmp_path / "verify.js")], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == [str(expected).lower() for _, _, expected in cases]
