"""Smoke test after a deploy: every API ready (several times, to meet several pods), OpenAPI served,
authentication enforced with the machine-readable error body. Exit 0 when all pass.

``python -m alexandrite.ops.smoke --shop URL --crm URL --mes URL``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import httpx

PROTECTED = {"shop": "/api/v1/orders", "crm": "/api/v1/crm/orders", "mes": "/api/v1/production/orders"}


async def check(urls: dict[str, str], rounds: int = 3, timeout: float = 5.0) -> list[str]:
    problems: list[str] = []
    async with httpx.AsyncClient(timeout=timeout) as client:
        for service, base in urls.items():
            base = base.rstrip("/")
            try:
                for _ in range(rounds):
                    ready = await client.get(f"{base}/health/ready")
                    if ready.status_code != 200:
                        problems.append(f"{service}: /health/ready answered {ready.status_code}: {ready.text[:200]}")
                        break
                spec = await client.get(f"{base}/openapi.json")
                if spec.status_code != 200 or "paths" not in spec.json():
                    problems.append(f"{service}: /openapi.json answered {spec.status_code}")
                anonymous = await client.get(f"{base}{PROTECTED[service]}")
                body = anonymous.json() if anonymous.headers.get("content-type", "").startswith(
                    "application/json") else {}
                if anonymous.status_code != 401 or "code" not in body.get("error", {}):
                    problems.append(f"{service}: {PROTECTED[service]} without credentials answered "
                                    f"{anonymous.status_code}, expected 401 with an error code")
            except (httpx.HTTPError, ValueError) as error:
                problems.append(f"{service}: {type(error).__name__}: {error}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alexandrite.ops.smoke", description=__doc__)
    for service, port in (("shop", 8001), ("crm", 8002), ("mes", 8003)):
        parser.add_argument(f"--{service}", default=f"http://{service}:{port}")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    problems = asyncio.run(check({"shop": args.shop, "crm": args.crm, "mes": args.mes}, rounds=args.rounds))
    for problem in problems:
        print(f"smoke: FAIL {problem}", file=sys.stderr)
    print("smoke: " + ("passed" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
