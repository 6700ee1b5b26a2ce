"""Every kind of bad token is refused with the contract's 401 code; good ones carry identity."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
import uuid

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.auth import Identity, VerifiedTokens
from gateway.jwks import JwksCache, parse_jwks
from gateway.tests.conftest import KeyRing, Rig, echo_app, gateway_settings, make_token
from shared.contracts import revoked_session_key
from shared.testing.net import ThreadedServer, free_port

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
    assert "authorization" not in headers  # no service reads it (issue 19, item 6)


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
    await expect_401(client, rig.token(sub="\u00b2"), "invalid_token")  # "²": isdigit(), not int()


async def test_revoked_session_is_refused(rig: Rig, client: httpx.AsyncClient, redis: Redis) -> None:
    sid = uuid.uuid4().hex
    token = rig.token(sid=sid)
    ok = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    await redis.set(revoked_session_key(sid), "1", ex=60)
    await expect_401(client, token, "token_revoked")


async def test_cached_token_still_expires(rig: Rig, client: httpx.AsyncClient) -> None:
    # Valid only thanks to the leeway, for one to two more seconds: the first request caches it.
    # `exp` is whole seconds, so the end is rounded up: `int(time.time()) + 1` could leave a
    # loaded machine only milliseconds to make that first request.
    leeway = rig.settings.jwt_leeway_seconds
    valid_until = math.ceil(time.time()) + 1
    token = rig.token(exp=valid_until - leeway)
    assert (await client.get(ME, headers={"Authorization": f"Bearer {token}"})).status_code == 200
    await asyncio.sleep(valid_until - time.time() + 0.3)
    await expect_401(client, token, "token_expired")


def test_verified_token_cache_is_bounded_and_honours_expiry() -> None:
    cache = VerifiedTokens(max_entries=2)
    cache.put("a", Identity(1, "s" * 32, expires_at=100.0))
    cache.put("b", Identity(2, "s" * 32, expires_at=100.0))
    cache.put("c", Identity(3, "s" * 32, expires_at=100.0))
    assert cache.get("a", now=50.0) is None  # oldest evicted
    identity = cache.get("b", now=50.0)
    assert identity is not None
    assert identity.user_id == 2
    assert cache.get("b", now=100.0) is None  # expired


def test_withdrawn_key_clears_verified_tokens() -> None:
    ring = KeyRing()
    ring.add("k1")
    ring.add("k2")
    jwks = JwksCache("http://127.0.0.1:9/jwks", None, refetch_interval=0)  # type: ignore[arg-type]
    jwks.keys = parse_jwks(ring.jwks())
    cleared: list[bool] = []
    jwks.on_key_removed.append(lambda: cleared.append(True))
    del ring.keys["k1"]
    new_keys = parse_jwks(ring.jwks())
    assert set(new_keys) == {"k2"}
    jwks.apply(new_keys)
    assert cleared == [True]


async def test_gateway_started_before_user_service_picks_keys_up_soon(rig: Rig, redis_url: str) -> None:
    """The first JWKS fetch fails (user_service not up yet); the first token after it is up works
    within about a second, not after the full refetch interval."""
    user_port = free_port()
    upstreams = {name: server.url for name, server in rig.upstreams.items()}
    upstreams["user"] = f"http://127.0.0.1:{user_port}"
    settings = gateway_settings(upstreams, redis_url, jwks_refetch_interval_seconds=30.0)
    gateway = ThreadedServer(create_app(settings)).start()
    user = ThreadedServer(echo_app("user", rig.ring), port=user_port).start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as c:
            headers = {"Authorization": f"Bearer {rig.token()}"}
            statuses = []
            for _ in range(30):
                statuses.append((await c.get(ME, headers=headers)).status_code)
                if statuses[-1] == 200:
                    break
                await asyncio.sleep(0.1)
    finally:
        user.stop()
        gateway.stop()
    assert statuses[-1] == 200
    assert len(statuses) <= 15


async def test_no_keys_because_user_service_is_down_is_503_not_a_bad_token(
        rig: Rig, redis_url: str) -> None:
    """A gateway that could never fetch the JWKS cannot judge any token: a valid one must not
    be told it is invalid (clients throw such tokens away and sign the user out)."""
    upstreams = {name: server.url for name, server in rig.upstreams.items()}
    upstreams["user"] = f"http://127.0.0.1:{free_port()}"
    gateway = ThreadedServer(create_app(gateway_settings(upstreams, redis_url))).start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as c:
            response = await c.get("/api/v1/orders", headers={"Authorization": f"Bearer {rig.token()}"})
    finally:
        gateway.stop()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "upstream_unavailable"


async def test_withdrawn_key_stops_working_without_a_new_one(rig: Rig, redis_url: str) -> None:
    """Only the periodic refetch can notice a key that is withdrawn with no successor in use."""
    rig.ring.add("short-lived")
    upstreams = {name: server.url for name, server in rig.upstreams.items()}
    settings = gateway_settings(upstreams, redis_url, jwks_max_age_seconds=0.2,
                                jwks_refetch_interval_seconds=30.0)
    gateway = ThreadedServer(create_app(settings)).start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as c:
            headers = {"Authorization": f"Bearer {rig.token(kid='short-lived')}"}
            before = await c.get(ME, headers=headers)
            del rig.ring.keys["short-lived"]
            await asyncio.sleep(0.8)
            after = await c.get(ME, headers=headers)
    finally:
        gateway.stop()
    assert before.status_code == 200
    assert after.status_code == 401
    assert after.json()["code"] == "invalid_token"


async def test_session_id_must_be_exactly_32_hex(rig: Rig, client: httpx.AsyncClient) -> None:
    await expect_401(client, rig.token(sid="a" * 32 + "\n"), "invalid_token")
    await expect_401(client, rig.token(sid="A" * 32), "invalid_token")


async def test_only_access_tokens_are_accepted(rig: Rig, client: httpx.AsyncClient) -> None:
    # RFC 9068: an access token says `at+jwt`; a JWT of another kind signed with the same key
    # (or one that says nothing) is no access token.
    for typ in ("JWT", "id_token+jwt", ""):
        await expect_401(client, rig.token(typ=typ), "invalid_token")
    for typ in ("at+jwt", "AT+JWT", "application/at+jwt"):
        response = await client.get(ME, headers={"Authorization": f"Bearer {rig.token(typ=typ)}"})
        assert response.status_code == 200
