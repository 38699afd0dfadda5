"""Where a process's CPU went, from a py-spy recording in its raw (folded) format.

Run: .venv/bin/python bench/pyspy_shares.py FILE.folded [--top 25] [--smoke]

Record with ``py-spy record --pid PID --format raw -o FILE.folded`` (bench_api.py ``--profile DIR`` does).
Three tables, shares of the sampled (non-idle) CPU:
- by layer, exclusive: each sample goes to the first frame, from the innermost outwards, that belongs
  to a known layer (SQLAlchemy compile, asyncpg, pydantic, FastAPI dependency solving, ...);
- by function, inclusive: samples with the function anywhere on the stack (request phases such as
  ``solve_dependencies``, ``serialize_response``, the kit's middlewares, the use cases);
- the hottest functions by own time.
``--smoke`` makes a tiny recording of itself first (needs py-spy), to check the script runs.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# First match wins, innermost frame first; (layer, substring of "file function").
LAYERS: list[tuple[str, str]] = [
    ("SQLAlchemy compile", "sqlalchemy/sql/compiler.py"),
    ("SQLAlchemy cache key", "sqlalchemy/sql/cache_key.py"),
    ("SQLAlchemy asyncpg adapter", "sqlalchemy/dialects/postgresql/asyncpg.py"),
    ("SQLAlchemy engine + result", "sqlalchemy/engine/"),
    ("SQLAlchemy session (orm)", "sqlalchemy/orm/"),
    ("SQLAlchemy pool", "sqlalchemy/pool/"),
    ("SQLAlchemy async glue", "sqlalchemy/ext/asyncio/"),
    ("SQLAlchemy other (constructs, events, util)", "sqlalchemy/"),
    ("asyncpg", "asyncpg/"),
    ("pydantic", "pydantic"),
    ("FastAPI dependency solving", "fastapi/dependencies/"),
    ("FastAPI jsonable_encoder", "fastapi/encoders.py"),
    ("FastAPI routing + handler", "fastapi/"),
    ("Starlette", "starlette/"),
    ("kit middlewares (http, throttle)", "alexandrite/kit/http.py"),
    ("kit middlewares (http, throttle)", "alexandrite/kit/throttle.py"),
    ("OpenTelemetry hooks", "opentelemetry/"),
    ("OpenTelemetry hooks", "alexandrite/kit/tracing.py"),
    ("structlog", "structlog/"),
    ("structlog", "alexandrite/kit/logs.py"),
    ("prometheus_client", "prometheus_client/"),
    ("aio-pika / aiormq / pamqp", "aio_pika/"),
    ("aio-pika / aiormq / pamqp", "aiormq/"),
    ("aio-pika / aiormq / pamqp", "pamqp/"),
    ("redis-py", "redis/"),
    ("uvicorn + httptools", "uvicorn/"),
    ("uvicorn + httptools", "httptools"),
    ("multipart parsing", "multipart/"),
    ("numpy", "numpy/"),
    ("alexandrite (own code)", "alexandrite/"),
    ("json (stdlib)", "/json/"),
    ("asyncio / uvloop", "/asyncio/"),
    ("asyncio / uvloop", "uvloop"),
    ("stdlib other", "/lib/python3"),
]

# Inclusive: a sample counts when any frame's "file function" contains the pattern ("^": the outermost
# frame only). SQLAlchemy runs its synchronous core inside greenlets: those samples' stacks start at
# Session.execute / Connection.execute and do not show the request that awaits them, so request
# phases below count only their coroutine part; the greenlet part is its own line.
PHASES: list[tuple[str, str]] = [
    ("SQLAlchemy greenlet part (stacks rooted in sqlalchemy)", "^sqlalchemy/"),
    ("ObservabilityMiddleware (whole request inside)", "kit/http.py __call__"),
    ("LoadShedMiddleware", "kit/throttle.py __call__"),
    ("authenticate + partner key lookup", "kit/auth.py authenticate"),
    ("FastAPI solve_dependencies (incl. auth)", "fastapi/dependencies/utils.py solve_dependencies"),
    ("FastAPI request body parse/validate", "fastapi/routing.py _extract_request_body"),
    ("FastAPI serialize_response", "fastapi/routing.py serialize_response"),
    ("jsonable_encoder", "fastapi/encoders.py jsonable_encoder"),
    ("JSONResponse.render", "starlette/responses.py render"),
    ("use case: create_order", "shop/handlers.py create_order"),
    ("use case: submit", "shop/handlers.py submit"),
    ("use case: attach_model", "shop/handlers.py attach_model"),
    ("read back: order_view", "shop/views.py order_view"),
    ("UnitOfWork.commit", "kit/db.py commit"),
    ("UnitOfWork.emit (envelope JSON)", "kit/db.py emit"),
    ("webhooks.enqueue", "shop/webhooks/deliveries.py enqueue"),
    ("SQLAlchemy AsyncSession.execute", "sqlalchemy/ext/asyncio/session.py execute"),
    ("SQLAlchemy statement compile", "sqlalchemy/sql/compiler.py __init__"),
    ("SQLAlchemy cache key generation", "sqlalchemy/sql/cache_key.py _generate_cache_key"),
    ("asyncpg (all)", "asyncpg/"),
    ("pydantic model_validate/model_dump", "pydantic"),
    ("structlog (all)", "structlog/"),
    ("OpenTelemetry (all)", "opentelemetry/"),
    ("prometheus_client (all)", "prometheus_client/"),
    ("outbox relay", "messaging/relay.py"),
    ("event consumer", "messaging/consumer.py"),
    ("uvicorn protocol", "uvicorn/protocols/"),
]


def parse(path: Path) -> list[tuple[list[str], int]]:
    """(frames outermost first as "file function", count) per folded line."""
    stacks = []
    for raw in path.read_text(errors="replace").splitlines():
        head, _, count = raw.rpartition(" ")
        if not head or not count.isdigit():
            continue
        frames = []
        for part in head.split(";"):
            match = FRAME.match(part)
            frames.append(f"{match['file']} {match['func']}" if match else part)
        stacks.append((frames, int(count)))
    return stacks


def layer_of(frame: str) -> str | None:
    for layer, pattern in LAYERS:
        if pattern in frame:
            return layer
    return None


def shares(stacks: list[tuple[list[str], int]]) -> tuple[int, Counter[str], Counter[str], Counter[str]]:
    total = 0
    layers: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in stacks:
        total += count
        layer = next((found for frame in reversed(frames) if (found := layer_of(frame))), "other")
        layers[layer] += count
        if frames:
            own[frames[-1]] += count
        for name, pattern in PHASES:
            if pattern.startswith("^"):
                if frames and pattern[1:] in frames[0]:
                    phases[name] += count
            elif any(pattern in frame for frame in frames):
                phases[name] += count
    return total, layers, phases, own


def report(path: Path, top: int = 15) -> None:
    total, layers, phases, own = shares(parse(path))
    if not total:
        print("no samples")
        return
    print(f"{total} samples")
    print(f"{'layer (exclusive)':<56} {'share':>6}")
    for layer, count in layers.most_common():
        print(f"{layer:<56} {count / total:>6.1%}")
    print(f"\n{'phase / function (inclusive)':<56} {'share':>6}")
    for name, _ in PHASES:
        if phases[name]:
            print(f"{name:<56} {phases[name] / total:>6.1%}")
    print(f"\n{'hottest functions (own time)':<90} {'share':>6}")
    for frame, count in own.most_common(top):
        print(f"{frame[-90:]:<90} {count / total:>6.1%}")


def py_spy() -> str:
    """py-spy of this virtualenv (the test extra installs it), else the one on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else "py-spy"


def smoke(directory: Path) -> Path:
    """A one-second recording of a small Python loop (needs py-spy)."""
    out = directory / "smoke.folded"
    code = "import json, time\nend = time.time() + 1.5\nwhile time.time() < end: json.dumps({'a': list(range(50))})"
    subprocess.run([py_spy(), "record", "--format", "raw", "--rate", "200", "-o", str(out), "--",
                    sys.executable, "-c", code], check=True, capture_output=True, timeout=60)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        with tempfile.TemporaryDirectory(prefix="alex-pyspy-") as tmp:
            report(smoke(Path(tmp)), args.top)
        return 0
    if args.file is None:
        parser.error("a .folded file is needed (or --smoke)")
    report(args.file, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
