"""The whole life of an account, end to end, as a client behind the gateway sees it."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from shared.contracts import revoked_session_key
from shared.testing.mail import MailSink
from shared.testing.problems import assert_problem
from user_service.tests.factories import PASSWORD, unique_email
from user_service.tests.helpers import identity_headers, login, signup, verify


async def test_signup_verify_login_profile_refresh_password_logout(
    client: httpx.AsyncClient, mail_sink: MailSink, redis: Redis
) -> None:
    email = unique_email()
    created = await signup(client, email.upper(), greeting="hello")
    assert created.status_code == 201
    profile = created.json()
    assert profile["email"] == email
    assert profile["email_verified"] is False
    assert profile["greeting"] == "hello"
    assert profile["profile_image_url"] is None
    assert profile["created_at"].endswith("Z")
    assert set(profile) == {"id", "email", "name", "greeting", "profile_image_url",
                            "email_verified", "created_at"}
    token = created.headers["Signup-Token"]
    assert created.headers["Cache-Control"] == "no-store"

    mail = await mail_sink.wait_for(email)
    assert "verification code" in str(mail.message["Subject"]).lower()
    verified = await verify(client, email, mail.code, token=token)
    assert verified.status_code == 200
    assert verified.json() == {"email_verified": True}

    first = await login(client, email)
    assert first.status_code == 200
    tokens = first.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    headers = identity_headers(tokens["access_token"])
    assert headers["X-User-Id"] == str(profile["id"])

    me = await client.get("/api/v1/users/me", headers=headers)
    assert me.status_code == 200
    assert me.json() == {**profile, "email_verified": True, "roles": []}

    patched = await client.patch("/api/v1/users/me", headers=headers,
                                 json={"name": "Min-ji Kim", "greeting": None})
    assert patched.status_code == 200
    assert patched.json()["name"] == "Min-ji Kim"
    assert patched.json()["greeting"] is None

    rotated = await client.post("/api/v1/auth/refresh",
                                json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    new_tokens = rotated.json()
    assert new_tokens["refresh_token"] != tokens["refresh_token"]
    # Same session, same sid.
    assert identity_headers(new_tokens["access_token"])["X-Session-Id"] == headers["X-Session-Id"]

    # A second login is a second session; the password change must sign it out, not this one.
    other = (await login(client, email)).json()
    other_sid = identity_headers(other["access_token"])["X-Session-Id"]
    changed = await client.put("/api/v1/users/me/password", headers=headers,
                               json={"current_password": PASSWORD,
                                     "new_password": "a brand new secret"})
    assert changed.status_code == 204
    assert await redis.get(revoked_session_key(other_sid)) == "1"
    assert await redis.get(revoked_session_key(headers["X-Session-Id"])) is None
    assert_problem(await client.post("/api/v1/auth/refresh",
                                     json={"refresh_token": other["refresh_token"]}),
                   401, "token_revoked")
    assert_problem(await login(client, email, PASSWORD), 401, "invalid_credentials")
    assert (await login(client, email, "a brand new secret")).status_code == 200

    logged_out = await client.post("/api/v1/auth/logout", headers=headers)
    assert logged_out.status_code == 204
    assert await redis.ttl(revoked_session_key(headers["X-Session-Id"])) > 900
    assert_problem(await client.post("/api/v1/auth/refresh",
                                     json={"refresh_token": new_tokens["refresh_token"]}),
                   401, "token_revoked")
