"""The whole account flow through the real gateway and the real user_service, each its own
uvicorn process on loopback, with real MariaDB, Redis and an SMTP server."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import jwt
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.tests.e2e import (
    PASSWORD,
    System,
    bearer,
    client_at,
    login,
    new_client_address,
    new_email,
    signed_up,
)
from shared.testing.datastores import database_url_for_tests
from shared.testing.identity import signed_identity_headers
from shared.testing.problems import assert_problem


async def test_readyz_with_every_service_up(api: httpx.AsyncClient) -> None:
    response = await api.get("/readyz")
    assert response.status_code == 200, response.text
    assert "server" not in response.headers  # no `server: uvicorn` (issue 12, point 9)


async def test_full_account_flow(api: httpx.AsyncClient, system: System) -> None:
    email = new_email()
    signup = await api.post("/api/v1/auth/signup", json={
        "email": email, "password": PASSWORD, "name": "Kim", "greeting": "hi"})
    assert signup.status_code == 201
    profile = signup.json()
    assert profile["email"] == email
    assert profile["email_verified"] is False
    assert profile["created_at"].endswith("Z")
    assert set(profile) == {"id", "email", "name", "greeting", "profile_image_url", "email_verified",
                            "created_at"}

    unverified = await api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(unverified, 403, "email_not_verified")

    code = (await system.mail.wait_for(email)).code
    verified = await api.post("/api/v1/auth/verify-email", json={"email": email, "code": code})
    assert verified.json() == {"email_verified": True}

    tokens = await login(api, email)
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] > 0

    me = await api.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json()["email_verified"] is True

    patched = await api.patch("/api/v1/users/me", headers=bearer(tokens["access_token"]),
                              json={"name": "Kim Minji", "profile_image_url": "https://img.example/k.png"})
    assert patched.status_code == 200
    assert patched.json()["name"] == "Kim Minji"
    public = await api.get(f"/api/v1/users/{profile['id']}", headers=bearer(tokens["access_token"]))
    assert public.json() == {"id": profile["id"], "name": "Kim Minji", "greeting": "hi",
                             "profile_image_url": "https://img.example/k.png"}

    refreshed = await api.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    new_tokens = refreshed.json()
    assert new_tokens["refresh_token"] != tokens["refresh_token"]
    me_again = await api.get("/api/v1/users/me", headers=bearer(new_tokens["access_token"]))
    assert me_again.status_code == 200

    logout = await api.post("/api/v1/auth/logout", headers=bearer(new_tokens["access_token"]))
    assert logout.status_code == 204
    after = await api.get("/api/v1/users/me", headers=bearer(new_tokens["access_token"]))
    assert_problem(after, 401, "token_revoked")
    dead_refresh = await api.post("/api/v1/auth/refresh", json={"refresh_token": new_tokens["refresh_token"]})
    assert dead_refresh.status_code == 401


async def test_a_logged_out_token_stays_refused_when_redis_loses_its_data(
        api: httpx.AsyncClient, system: System, redis: Redis) -> None:
    """Redis is the fast gate, MySQL the truth (issue 12, point 7): after FLUSHDB the gateway
    fails closed until user_service has published the revocations again, then 401."""
    tokens = await login(api, await signed_up(api, system.mail))
    me = bearer(tokens["access_token"])
    assert (await api.post("/api/v1/auth/logout", headers=me)).status_code == 204
    await redis.flushdb()  # this suite's own database only
    answers: list[int] = []
    async with asyncio.timeout(10):
        while not answers or answers[-1] == 503:
            response = await api.get("/api/v1/users/me", headers=me)
            answers.append(response.status_code)
            if response.status_code == 503:
                assert_problem(response, 503, "upstream_unavailable")
                await asyncio.sleep(0.05)
    assert set(answers) <= {503, 401}, answers
    assert_problem(response, 401, "token_revoked")


async def test_responses_carrying_tokens_are_not_to_be_stored(
        api: httpx.AsyncClient, system: System) -> None:
    """RFC 6749 5.1 (issue 12, point 9)."""
    email = await signed_up(api, system.mail)
    logged_in = await api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    refreshed = await api.post("/api/v1/auth/refresh",
                               json={"refresh_token": logged_in.json()["refresh_token"]})
    for response in (logged_in, refreshed):
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"


async def test_a_session_lives_at_most_90_days_however_often_refreshed(
        api: httpx.AsyncClient, system: System) -> None:
    """Issue 12, point 9: refresh cannot stretch a session past 90 days from its login."""
    tokens = await login(api, await signed_up(api, system.mail))
    sid = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]
    engine = create_async_engine(database_url_for_tests("preorder_user", "e2e"))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE sessions SET created_at = UTC_TIMESTAMP(6) - "
                                    "INTERVAL 91 DAY WHERE id = :sid"), {"sid": sid})
    finally:
        await engine.dispose()
    assert_problem(await api.post("/api/v1/auth/refresh",
                                  json={"refresh_token": tokens["refresh_token"]}),
                   401, "token_expired")


async def test_refresh_token_reuse_revokes_the_session(api: httpx.AsyncClient, system: System) -> None:
    email = await signed_up(api, system.mail)
    tokens = await login(api, email)
    first = await api.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert first.status_code == 200
    reuse = await api.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert reuse.status_code == 401
    # The thief's use revoked the whole family: the legitimate rotated pair is dead too.
    rotated = first.json()
    assert (await api.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
            ).status_code == 401
    assert_problem(await api.get("/api/v1/users/me", headers=bearer(rotated["access_token"])),
                   401, "token_revoked")


async def test_password_change_revokes_other_sessions(api: httpx.AsyncClient, system: System) -> None:
    email = await signed_up(api, system.mail)
    phone = await login(api, email)
    laptop = await login(api, email)
    changed = await api.put("/api/v1/users/me/password", headers=bearer(laptop["access_token"]),
                            json={"current_password": PASSWORD, "new_password": "a brand new secret"})
    assert changed.status_code == 204
    assert_problem(await api.get("/api/v1/users/me", headers=bearer(phone["access_token"])),
                   401, "token_revoked")
    assert (await api.post("/api/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})
            ).status_code == 401
    assert (await api.get("/api/v1/users/me", headers=bearer(laptop["access_token"]))).status_code == 200
    old = await api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(old, 401, "invalid_credentials")
    await login(api, email, "a brand new secret")


async def test_signup_conflicts_and_validation(api: httpx.AsyncClient, system: System) -> None:
    email = await signed_up(api, system.mail)
    again = await api.post("/api/v1/auth/signup",
                           json={"email": email.upper(), "password": PASSWORD, "name": "X"})
    assert_problem(again, 409, "email_taken")
    short = await api.post("/api/v1/auth/signup",
                           json={"email": new_email(), "password": "short", "name": "X"})
    assert_problem(short, 422, "validation_error")
    assert short.json()["errors"]
    malformed = await api.post("/api/v1/auth/signup", content=b'{"email": ',
                               headers={"Content-Type": "application/json"})
    assert_problem(malformed, 422, "validation_error")
    wrong_type = await api.post("/api/v1/auth/login", json={"email": ["a"], "password": 5})
    assert_problem(wrong_type, 422, "validation_error")


async def test_verification_code_errors(api: httpx.AsyncClient, system: System) -> None:
    email = new_email()
    await api.post("/api/v1/auth/signup", json={"email": email, "password": PASSWORD, "name": "V"})
    code = (await system.mail.wait_for(email)).code
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        assert_problem(await api.post("/api/v1/auth/verify-email", json={"email": email, "code": wrong}),
                       422, "invalid_code")
    locked = await api.post("/api/v1/auth/verify-email", json={"email": email, "code": code})
    assert_problem(locked, 429, "too_many_attempts")
    assert int(locked.headers["retry-after"]) > 0


async def test_verify_email_reveals_nothing_about_an_address(
        api: httpx.AsyncClient, system: System) -> None:
    """An unknown address, a verified one and a wrong code answer alike (issue 12, point 5)."""
    verified = await signed_up(api, system.mail)
    pending = new_email()
    await api.post("/api/v1/auth/signup", json={"email": pending, "password": PASSWORD,
                                                "name": "P"})
    code = (await system.mail.wait_for(pending)).code
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    bodies = []
    for email, attempt in ((pending, wrong), (new_email(), code), (verified, code)):
        response = await api.post("/api/v1/auth/verify-email",
                                  json={"email": email, "code": attempt})
        assert_problem(response, 422, "invalid_code")
        bodies.append({k: v for k, v in response.json().items() if k != "request_id"})
    assert bodies[0] == bodies[1] == bodies[2]


async def test_a_new_sign_up_replaces_an_unverified_account(
        api: httpx.AsyncClient, system: System) -> None:
    """Whoever typed an address first does not keep it: the mailbox decides (point 4)."""
    email = new_email()
    squatter = await api.post("/api/v1/auth/signup", json={
        "email": email, "password": "the squatter's password", "name": "Squatter"})
    assert squatter.status_code == 201
    owner = await api.post("/api/v1/auth/signup", json={
        "email": email, "password": PASSWORD, "name": "Owner"})
    assert owner.status_code == 201, owner.text
    code = (await system.mail.wait_for(email, count=2)).code
    verified = await api.post("/api/v1/auth/verify-email", json={"email": email, "code": code})
    assert verified.status_code == 200
    tokens = await login(api, email)
    me = await api.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.json()["name"] == "Owner"
    assert_problem(await api.post("/api/v1/auth/login", json={
        "email": email, "password": "the squatter's password"}), 401, "invalid_credentials")


async def test_resend_does_not_reveal_accounts(api: httpx.AsyncClient) -> None:
    unknown = await api.post("/api/v1/auth/verify-email/resend", json={"email": new_email()})
    assert unknown.status_code == 202


async def test_login_failures_are_throttled_per_email(api: httpx.AsyncClient, system: System) -> None:
    email = await signed_up(api, system.mail)
    unknown = await api.post("/api/v1/auth/login", json={"email": new_email(), "password": PASSWORD})
    wrong = await api.post("/api/v1/auth/login", json={"email": email, "password": "not the password"})
    assert_problem(unknown, 401, "invalid_credentials")
    assert_problem(wrong, 401, "invalid_credentials")
    assert unknown.json()["detail"] == wrong.json()["detail"]
    for _ in range(9):
        await api.post("/api/v1/auth/login", json={"email": email, "password": "not the password"})
    throttled = await api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(throttled, 429, "too_many_attempts")
    assert int(throttled.headers["retry-after"]) > 0


async def test_a_strangers_failed_logins_never_lock_the_owner_out(
        api: httpx.AsyncClient, system: System) -> None:
    """Failures count per (email, client address) and per address (issue 12, point 1)."""
    email = await signed_up(api, system.mail)
    async with client_at(system, new_client_address()) as attacker:
        for _ in range(10):
            assert_problem(await attacker.post("/api/v1/auth/login", json={
                "email": email, "password": "a guess"}), 401, "invalid_credentials")
        # From there, every attempt is refused now, the right password too.
        locked = await attacker.post("/api/v1/auth/login",
                                     json={"email": email, "password": PASSWORD})
        assert_problem(locked, 429, "too_many_attempts")
        assert 0 < int(locked.headers["retry-after"]) <= 900
    await login(api, email)


async def test_an_address_past_100_failures_is_refused_for_every_account(
        api: httpx.AsyncClient, system: System) -> None:
    email = await signed_up(api, system.mail)
    async with client_at(system, new_client_address()) as sprayer:
        guesses = [sprayer.post("/api/v1/auth/login", json={
            "email": new_email(), "password": "a guess"}) for _ in range(100)]
        for batch in range(0, 100, 20):
            for response in await asyncio.gather(*guesses[batch:batch + 20]):
                assert_problem(response, 401, "invalid_credentials")
        refused = await sprayer.post("/api/v1/auth/login",
                                     json={"email": email, "password": PASSWORD})
        assert_problem(refused, 429, "too_many_attempts")
    await login(api, email)


async def test_sign_up_resend_and_verification_are_limited_per_client_address(
        api: httpx.AsyncClient, system: System) -> None:
    """Past the contract's numbers, 429 rate_limited with Retry-After (issue 12, point 3)."""
    async def signup(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/api/v1/auth/signup", json={
            "email": new_email(), "password": PASSWORD, "name": "Many"})

    for _ in range(10):
        assert (await signup(api)).status_code == 201
    for _ in range(10):
        assert (await api.post("/api/v1/auth/verify-email/resend",
                               json={"email": new_email()})).status_code == 202
    for _ in range(30):
        assert_problem(await api.post("/api/v1/auth/verify-email", json={
            "email": new_email(), "code": "123456"}), 422, "invalid_code")
    refused = [await signup(api),
               await api.post("/api/v1/auth/verify-email/resend", json={"email": new_email()}),
               await api.post("/api/v1/auth/verify-email",
                              json={"email": new_email(), "code": "123456"})]
    for response in refused:
        assert_problem(response, 429, "rate_limited")
        assert 0 < int(response.headers["retry-after"]) <= 3600
    async with client_at(system, new_client_address()) as elsewhere:
        assert (await signup(elsewhere)).status_code == 201


async def test_another_users_data_cannot_be_read_or_changed(api: httpx.AsyncClient, system: System) -> None:
    alice_email = await signed_up(api, system.mail, name="Alice")
    bob_email = await signed_up(api, system.mail, name="Bob")
    alice, bob = await login(api, alice_email), await login(api, bob_email)
    bob_id = (await api.get("/api/v1/users/me", headers=bearer(bob["access_token"]))).json()["id"]

    spoofed = {**bearer(alice["access_token"]), "X-User-Id": str(bob_id)}
    me = await api.get("/api/v1/users/me", headers=spoofed)
    assert me.json()["name"] == "Alice"
    alice_id = me.json()["id"]
    # The edit goes through, to Alice's own profile.
    patched = await api.patch("/api/v1/users/me", headers=spoofed, json={"name": "Mallory"})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["id"], patched.json()["name"]) == (alice_id, "Mallory")
    bob_public = await api.get(f"/api/v1/users/{bob_id}", headers=bearer(alice["access_token"]))
    assert bob_public.json()["name"] == "Bob"
    assert "email" not in bob_public.json()

    no_token = await api.get("/api/v1/users/me", headers={"X-User-Id": str(bob_id)})
    assert_problem(no_token, 401, "missing_token")
    # Alice changing "her" password with Bob's id in a header changes only Alice's: Bob's
    # session lives on and his password (the same as hers was) still works.
    changed = await api.put("/api/v1/users/me/password", headers=spoofed,
                            json={"current_password": PASSWORD, "new_password": "alice's new secret"})
    assert changed.status_code == 204, changed.text
    bob_me = await api.get("/api/v1/users/me", headers=bearer(bob["access_token"]))
    assert bob_me.status_code == 200
    assert bob_me.json()["name"] == "Bob"
    await login(api, bob_email)
    await login(api, alice_email, "alice's new secret")


async def test_a_service_port_reached_directly_cannot_act_as_a_user(
        api: httpx.AsyncClient, system: System) -> None:
    """Only the gateway's signature makes X-User-Id believable: a process that reaches the
    service without it cannot act as anyone (issue 12, point 6)."""
    tokens = await login(api, await signed_up(api, system.mail))
    me = (await api.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))).json()
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    async with httpx.AsyncClient(base_url=system.services["user"].url, timeout=15) as direct:
        unsigned = await direct.get("/api/v1/users/me", headers={
            "X-User-Id": str(me["id"]), "X-Session-Id": claims["sid"]})
        assert unsigned.status_code == 401
        assert unsigned.json()["code"] == "missing_token"
        forged = signed_identity_headers(me["id"], claims["sid"], "a-key-the-gateway-never-had")
        assert (await direct.get("/api/v1/users/me", headers=forged)).status_code == 401
        changed = await direct.put("/api/v1/users/me/password", json={
            "current_password": PASSWORD, "new_password": "taken over"}, headers={
            "X-User-Id": str(me["id"]), "X-Session-Id": claims["sid"]})
        assert changed.status_code == 401
    await login(api, me["email"])


async def test_unknown_user_is_404(api: httpx.AsyncClient, system: System) -> None:
    tokens = await login(api, await signed_up(api, system.mail))
    assert_problem(await api.get("/api/v1/users/999999999", headers=bearer(tokens["access_token"])),
                   404, "not_found")
    assert_problem(await api.get("/api/v1/users/abc", headers=bearer(tokens["access_token"])),
                   422, "validation_error")


async def test_request_id_reaches_every_service_log(api: httpx.AsyncClient, system: System) -> None:
    request_id = f"e2e-{uuid.uuid4().hex}"
    response = await api.post("/api/v1/auth/login", headers={"X-Request-Id": request_id},
                              json={"email": new_email(), "password": PASSWORD})
    assert response.headers["x-request-id"] == request_id
    assert response.json()["request_id"] == request_id
    await system.wait_for_logged(request_id, "gateway", "user")


async def test_jwks_is_public(api: httpx.AsyncClient) -> None:
    response = await api.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert keys
    assert all(key["alg"] == "EdDSA" and "d" not in key for key in keys)


async def test_merged_openapi_lists_user_routes(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()
    assert "/api/v1/auth/signup" in document["paths"]
    assert "/api/v1/users/me" in document["paths"]
    assert not [path for path in document["paths"] if path.startswith("/internal")]
    assert "security" not in document["paths"]["/api/v1/auth/login"]["post"]
    assert document["paths"]["/api/v1/users/me"]["get"]["security"] == [{"bearer": []}]


@pytest.mark.parametrize(("name", "service"), [("gateway", "gateway"), ("user", "user_service")])
def test_logs_are_json(system: System, name: str, service: str) -> None:
    # Every line, uvicorn's own included: one plain line would break a log pipeline.
    lines = system.log(name).splitlines()
    assert lines
    assert [json.loads(line)["service"] for line in lines] == [service] * len(lines)
