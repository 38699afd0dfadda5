"""Standard tokens that can be revoked: sign-out used to leave the token working for 12 h."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import jwt
from asgi_lifespan import LifespanManager

from alexandrite.cli import build_parser
from alexandrite.crm.app import create_app as create_crm
from alexandrite.kit.security import Principal, hash_password_scrypt
from alexandrite.kit.settings import Settings
from alexandrite.kit.tokens import issue_token
from tests.security.test_auth_header_bypass import _settings, shop

PASSWORD = "correct horse battery"


@asynccontextmanager
async def crm(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_crm(settings)
    async with LifespanManager(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://crm") as client:
            yield client


async def _customer(client: httpx.AsyncClient, password: str = PASSWORD) -> tuple[str, dict[str, str]]:
    email = f"tok-{uuid.uuid4().hex[:8]}@example.com"
    assert (await client.post("/api/v1/auth/signup", json={"email": email, "password": password, "name": "T"}
                              )).status_code == 201
    return email, await _sign_in(client, email, password)


async def _sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = await client.post("/api/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": "Bearer " + response.json()["access_token"]}


async def test_signin_token_is_a_short_lived_jwt_for_the_shop_only(settings: Settings) -> None:
    """POST /api/v1/auth/token → JWT with iss/aud=shop/iat/exp/jti/kid; the same token at crm → 401."""
    local = _settings(settings)
    async with shop(local) as client:
        _, auth = await _customer(client)
    token = auth["Authorization"].split()[1]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == ["shop"] and claims["iss"] == "alexandrite" and claims["role"] == "customer"
    assert claims["exp"] - claims["iat"] <= local.auth.token_ttl_seconds + 1 and claims["jti"]
    assert jwt.get_unverified_header(token)["kid"] == local.auth.secret_key_id
    async with crm(local) as client:
        response = await client.get("/api/v1/crm/orders", headers=auth)
    assert response.status_code == 401


async def test_signout_revokes_the_token_on_every_replica(settings: Settings) -> None:
    """POST /api/v1/auth/signout, then GET /api/v1/orders with the same token: was 200 for 12 h, now 401."""
    local = _settings(settings)
    async with shop(local) as client, shop(local) as replica:
        _, auth = await _customer(client)
        assert (await replica.get("/api/v1/orders", headers=auth)).status_code == 200
        assert (await client.post("/api/v1/auth/signout", headers=auth)).status_code == 204
        for app in (client, replica):
            response = await app.get("/api/v1/orders", headers=auth)
            assert response.status_code == 401
            assert "revoked" in response.json()["error"]["message"]


async def test_password_change_revokes_every_token_of_the_account(settings: Settings) -> None:
    """POST /api/v1/auth/password: both earlier tokens → 401; the new password signs in."""
    async with shop(_settings(settings)) as client:
        email, first = await _customer(client)
        second = await _sign_in(client, email)
        wrong = await client.post("/api/v1/auth/password", headers=first,
                                  json={"current_password": "nope", "new_password": "another long one"})
        assert wrong.status_code == 401
        changed = await client.post("/api/v1/auth/password", headers=first,
                                    json={"current_password": PASSWORD, "new_password": "another long one"})
        assert changed.status_code == 204
        for auth in (first, second):
            assert (await client.get("/api/v1/orders", headers=auth)).status_code == 401
        fresh = await _sign_in(client, email, "another long one")
        assert (await client.get("/api/v1/orders", headers=fresh)).status_code == 200


async def test_page_signout_revokes_the_cookie_token(settings: Settings) -> None:
    """POST /signout on the shop pages, then the old cookie's token on the API → 401."""
    async with shop(_settings(settings)) as client:
        _, auth = await _customer(client)
        client.cookies.set("alex_shop_session", auth["Authorization"].split()[1])
        page = await client.get("/orders")
        assert page.status_code == 200
        csrf = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0] \
            if 'name="csrf-token"' in page.text else page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        out = await client.post("/signout", data={"csrf_token": csrf}, headers={"Origin": "http://shop"})
        assert out.status_code == 303
        assert (await client.get("/api/v1/orders", headers=auth)).status_code == 401


async def test_scrypt_hash_is_upgraded_to_argon2id_on_sign_in(settings: Settings) -> None:
    """A customer stored with the former scrypt hash signs in; the stored hash becomes argon2id."""
    async with shop(_settings(settings)) as client:
        email, _ = await _customer(client)
        connection = await asyncpg.connect(settings.database_url("shop").replace("+asyncpg", ""))
        try:
            await connection.execute("UPDATE customers SET password_hash = $1 WHERE email = $2",
                                     hash_password_scrypt(PASSWORD), email)
            await _sign_in(client, email)
            stored = await connection.fetchval("SELECT password_hash FROM customers WHERE email = $1", email)
        finally:
            await connection.close()
        assert stored.startswith("$argon2id$")
        await _sign_in(client, email)  # and still signs in


async def test_key_rotation_signs_nobody_out(settings: Settings) -> None:
    """A token signed by the old key (kid k1) still works after ALEX_SECRET_KEY rotates to k2."""
    before = _settings(settings)
    async with shop(before) as client:
        _, auth = await _customer(client)
    after = before.replace(secret_key="n" * 48, secret_key_id="k2",
                           previous_secret_keys={before.auth.secret_key_id: before.auth.secret_key})
    async with shop(after) as client:
        assert (await client.get("/api/v1/orders", headers=auth)).status_code == 200
    dropped = after.replace(previous_secret_keys={})
    async with shop(dropped) as client:
        assert (await client.get("/api/v1/orders", headers=auth)).status_code == 401


def _cli(settings: Settings, *argv: str) -> int:
    args: argparse.Namespace = build_parser().parse_args(list(argv))
    return int(args.func(settings, args))


def test_cli_revokes_one_token_and_all_tokens_of_a_staff_member(settings: Settings) -> None:
    """`alexandrite token revoke JTI` and `alexandrite token revoke --user NAME`: the staff token → 401 at crm."""
    local = _settings(settings)
    name = f"ann-{uuid.uuid4().hex[:6]}"
    one = issue_token(local, Principal(role="seller", subject=name, name=name), 600)
    other = issue_token(local, Principal(role="seller", subject=name, name=name), 600)
    jti = jwt.decode(one, options={"verify_signature": False})["jti"]

    async def statuses() -> list[int]:
        async with crm(local) as client:
            return [(await client.get("/api/v1/crm/orders", headers={"Authorization": f"Bearer {token}"})).status_code
                    for token in (one, other)]

    assert asyncio.run(statuses()) == [200, 200]
    assert _cli(local, "token", "revoke", jti) == 0
    assert asyncio.run(statuses()) == [401, 200]
    assert _cli(local, "token", "revoke", "--user", name) == 0
    assert asyncio.run(statuses()) == [401, 401]
    fresh = issue_token(local, Principal(role="seller", subject=name, name=name), 600)
    one, other = fresh, fresh
    assert asyncio.run(statuses()) == [200, 200]  # tokens issued after the revocation work


def test_cli_revokes_every_token_of_a_customer_by_email(settings: Settings) -> None:
    """`alexandrite token revoke --user EMAIL` → the customer's token answers 401."""
    local = _settings(settings)

    async def sign_up() -> tuple[str, dict[str, str]]:
        async with shop(local) as client:
            return await _customer(client)

    async def status(auth: dict[str, str]) -> int:
        async with shop(local) as client:
            return (await client.get("/api/v1/orders", headers=auth)).status_code

    email, auth = asyncio.run(sign_up())
    assert asyncio.run(status(auth)) == 200
    assert _cli(local, "token", "revoke", "--user", email.upper()) == 0
    assert asyncio.run(status(auth)) == 401
    assert _cli(local, "token", "revoke", "--user", "nobody-at-all@example.com") == 1
