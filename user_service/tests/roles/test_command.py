"""Roles: granted and revoked by the operator's command alone, shown on /users/me, carried in the
access token; a revocation signs the user out at once."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import jwt
from redis.asyncio import Redis

from shared.contracts import revoked_session_key
from shared.testing.mail import MailSink
from shared.testing.problems import assert_problem
from user_service.tests.helpers import identity_headers, login, signed_in


def run_roles_command(database_url: str, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "APP_ENV": "test", "USER_DATABASE_URL": database_url,
           "USER_REDIS_URL": redis_url}
    return subprocess.run([sys.executable, "-m", "user_service.roles", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


async def test_the_operator_grants_and_revokes_the_seller_role(
    client: httpx.AsyncClient, mail_sink: MailSink, database_url: str, redis_url: str,
    redis: Redis,
) -> None:
    email, tokens, headers = await signed_in(client, mail_sink)
    assert (await client.get("/api/v1/users/me", headers=headers)).json()["roles"] == []
    assert "roles" not in jwt.decode(tokens["access_token"], options={"verify_signature": False})

    granted = run_roles_command(database_url, redis_url, "grant", email.upper(), "seller")
    assert granted.returncode == 0, granted.stderr
    assert (await client.get("/api/v1/users/me", headers=headers)).json()["roles"] == ["seller"]
    again = run_roles_command(database_url, redis_url, "grant", email, "seller")
    assert "already granted" in again.stdout
    # The role rides in the tokens of the next login (and refresh).
    second = (await login(client, email)).json()
    claims = jwt.decode(second["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["seller"]
    refreshed = await client.post("/api/v1/auth/refresh",
                                  json={"refresh_token": second["refresh_token"]})
    assert jwt.decode(refreshed.json()["access_token"],
                      options={"verify_signature": False})["roles"] == ["seller"]

    revoked = run_roles_command(database_url, redis_url, "revoke", email, "seller")
    assert revoked.returncode == 0, revoked.stderr
    assert "2 session(s) signed out" in revoked.stdout
    # Every token that carried the role stops at the gateway at once.
    for pair in (tokens, second):
        sid = jwt.decode(pair["access_token"], options={"verify_signature": False})["sid"]
        assert await redis.exists(revoked_session_key(sid))
    third = (await login(client, email)).json()
    assert "roles" not in jwt.decode(third["access_token"], options={"verify_signature": False})
    me = await client.get("/api/v1/users/me", headers=identity_headers(third["access_token"]))
    assert me.json()["roles"] == []


async def test_the_command_refuses_unknown_accounts_and_roles(
    database_url: str, redis_url: str
) -> None:
    unknown = run_roles_command(database_url, redis_url, "grant", "nobody@example.com", "seller")
    assert unknown.returncode == 1
    assert "no account" in unknown.stderr
    bad_role = run_roles_command(database_url, redis_url, "grant", "nobody@example.com", "admin")
    assert bad_role.returncode == 2  # argparse: not a role


async def test_no_public_route_grants_a_role(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    """The attack: a user asks for the seller role through the profile route."""
    _, _, headers = await signed_in(client, mail_sink)
    assert_problem(await client.patch("/api/v1/users/me", json={"roles": ["seller"]},
                                      headers=headers), 422, "validation_error")
    assert (await client.get("/api/v1/users/me", headers=headers)).json()["roles"] == []
