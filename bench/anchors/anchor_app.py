"""The anchor: a minimal FastAPI + pydantic + asyncpg app on the same PostgreSQL, one statement per request.

Run by uvicorn with uvloop and httptools as its own process (bench/support.py ``AnchorApp``):
``ANCHOR_DSN=postgresql://postgres@127.0.0.1:5432/DB uvicorn anchor_app:app --app-dir bench/anchors``.
The database is the benchmark's own; the table is made at start.

- ``POST /orders``                 pydantic body, one INSERT ... RETURNING, 201 with the row
- ``GET /orders/{id}``             one SELECT, 200 with the row
- ``PUT /orders/{id}/model``       multipart upload read whole, sha256, one UPDATE ... RETURNING
- ``POST /orders/{id}/submit``     one UPDATE ... RETURNING, 202
- ``GET /health``                  no database

This is the floor an order API on this stack can reach per request; the platform's endpoints are
measured against it in the same run.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Literal

import asyncpg
from fastapi import FastAPI, File, Header, HTTPException, UploadFile
from pydantic import BaseModel

TABLE = """
CREATE TABLE IF NOT EXISTS anchor_orders (
    id uuid PRIMARY KEY,
    owner text NOT NULL,
    alloy text NOT NULL,
    status text NOT NULL,
    model_sha256 text,
    model_bytes integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
)"""
COLUMNS = "id, owner, alloy, status, model_sha256, model_bytes, created_at, updated_at"


class CreateOrder(BaseModel):
    alloy: Literal["gold_585", "gold_750", "silver_925", "platinum_950"]


class OrderOut(BaseModel):
    id: uuid.UUID
    owner: str
    alloy: str
    status: str
    model_sha256: str | None = None
    model_bytes: int | None = None
    created_at: datetime
    updated_at: datetime


pool: asyncpg.Pool


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global pool
    size = int(os.environ.get("ANCHOR_POOL_SIZE", "10"))
    pool = await asyncpg.create_pool(os.environ["ANCHOR_DSN"], min_size=size, max_size=size)
    await pool.execute(TABLE)
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(lifespan=lifespan)


def _found(row: asyncpg.Record | None) -> dict[str, object]:
    if row is None:
        raise HTTPException(404, "not found")
    return dict(row)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/orders", status_code=201, response_model=OrderOut)
async def create(body: CreateOrder, x_api_key: Annotated[str | None, Header()] = None) -> dict[str, object]:
    return _found(await pool.fetchrow(
        f"INSERT INTO anchor_orders (id, owner, alloy, status) VALUES ($1, $2, $3, 'INITIATED') RETURNING {COLUMNS}",
        uuid.uuid4(), (x_api_key or "")[:12], body.alloy))


@app.get("/orders/{order_id}", response_model=OrderOut)
async def read(order_id: uuid.UUID) -> dict[str, object]:
    return _found(await pool.fetchrow(f"SELECT {COLUMNS} FROM anchor_orders WHERE id = $1", order_id))


@app.put("/orders/{order_id}/model", response_model=OrderOut)
async def upload(order_id: uuid.UUID, file: Annotated[UploadFile, File()]) -> dict[str, object]:
    data = await file.read()
    return _found(await pool.fetchrow(
        f"UPDATE anchor_orders SET model_sha256 = $2, model_bytes = $3, status = 'FILE_UPLOADED', updated_at = now() "
        f"WHERE id = $1 RETURNING {COLUMNS}", order_id, hashlib.sha256(data).hexdigest(), len(data)))


@app.post("/orders/{order_id}/submit", status_code=202, response_model=OrderOut)
async def submit(order_id: uuid.UUID) -> dict[str, object]:
    return _found(await pool.fetchrow(
        f"UPDATE anchor_orders SET status = 'SUBMITTED', updated_at = now() WHERE id = $1 RETURNING {COLUMNS}",
        order_id))
