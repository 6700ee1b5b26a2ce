"""Every kind of bad token is refused with the contract's 401 code; good ones carry identity."""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from redis.asyncio import Redis

from gateway.tests.conftest import Rig, make_token

ME = "/api/v1/users/me"


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def expect_401(client: httpx.AsyncClient, token: str | None, code: str,
                     scheme: str = "Bearer") -> None:
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    response = await client.get(ME, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]


async def test_valid_token_is_forwarded_with_identity(rig: Rig, client: httpx.AsyncClient) -> None:
    sid = uuid.uuid4().hex
    response = await client.get(ME, headers={"Authorization": f"Bearer {rig.token(sub='42', sid=sid)}"})
    assert response.status_code == 200
    headers = response.json()["headers"]
    assert headers["x-user-id"] == "42"
    assert headers["x-session-id"] == sid
    assert "authorization" in headers  # end-to-end header passes through untouched


async def test_missing_token(client: httpx.AsyncClient) -> None:
    await expect_401(client, None, "missing_token")


async def test_wrong_scheme_is_missing_token(rig: Rig, client: httpx.AsyncClient) -> None:
    await expect_401(client, rig.token(), "missing_token", scheme="Basic")


async def test_garbage_token(client: httpx.AsyncClient) -> None:
    await expect_401(client, "not.a.jwt", "invalid_token")


async def test_alg_none_is_refused(client: httpx.AsyncClient) -> None:
    now = int(time.time())
    claims = {"iss": "preorder-user-service", "aud": "preorder-api", "sub": "1",
              "sid": uuid.uuid4().hex, "jti": "x", "iat": now, "exp": now + 60}
    token = f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'})}.{b64(claims)}."
    await expect_401(client, token, "invalid_token")


async def test_hs256_signed_with_public_key_is_refused(rig: Rig, client: httpx.AsyncClient) -> None:
    # The classic key-confusion attack: use the published public key as an HMAC secret.
    public = rig.ring.keys["k1"].public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    now = int(time.time())
    claims = {"iss": "preorder-user-service", "aud": "preorder-api", "sub": "1",
              "sid": uuid.uuid4().hex, "jti": "x", "iat": now, "exp": now + 60}
    token = jwt.encode(claims, public, algorithm="HS256", headers={"kid": "k1"})
    await expect_401(client, token, "invalid_token")


async def test_tampered_payload_is_refused(rig: Rig, client: httpx.AsyncClient) -> None:
    header, payload, signature = rig.token(sub="42").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "1"
    await expect_401(client, f"{header}.{b64(claims)}.{signature}", "invalid_token")


async def test_key_not_in_jwks_is_refused(client: httpx.AsyncClient) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    stranger = Ed25519PrivateKey.generate()
    await expect_401(client, make_token(stranger, kid="nobody-knows"), "invalid_token")
    # Same kid as a real key, wrong private key: signature check fails.
    await expect_401(client, make_token(stranger, kid="k1"), "invalid_token")


async def test_rotated_key_is_picked_up_without_restart(rig: Rig, client: httpx.AsyncClient) -> None:
    rig.ring.add("k2")
    response = await client.get(ME, headers={"Authorization": f"Bearer {rig.token(kid='k2', sub='7')}"})
    assert response.status_code == 200
    assert response.json()["headers"]["x-user-id"] == "7"


async def test_expired_token(rig: Rig, client: httpx.AsyncClient) -> None:
    await expect_401(client, rig.token(expires_in=-120), "token_expired")


async def test_wrong_audience_and_issuer(rig: Rig, client: httpx.AsyncClient) -> None:
    await expect_401(client, rig.token(aud="someone-else"), "invalid_token")
    await expect_401(client, rig.token(iss="evil"), "invalid_token")


async def test_required_claims(rig: Rig, client: httpx.AsyncClient) -> None:
    for claim in ("exp", "iat", "sub", "jti", "sid"):
        await expect_401(client, rig.token(drop=(claim,)), "invalid_token")


async def test_non_numeric_subject_is_refused(rig: Rig, client: httpx.AsyncClient) -> None:
    await expect_401(client, rig.token(sub="admin"), "invalid_token")
    await expect_401(client, rig.token(sub=str(2**53)), "invalid_token")


async def test_revoked_session_is_refused(rig: Rig, client: httpx.AsyncClient, redis: Redis) -> None:
    sid = uuid.uuid4().hex
    token = rig.token(sid=sid)
    ok = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    await redis.set(f"auth:revoked-session:{sid}", "1", ex=60)
    await expect_401(client, token, "token_revoked")
