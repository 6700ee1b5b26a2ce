"""Bulk accounts (the load test's buyers): verified, signed in, and their tokens are the
service's own: the profile route knows them, and a password login works."""

from __future__ import annotations

import jwt
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import create_sessionmaker
from shared.testing.apps import RunningApp
from user_service.auth.bulk import create_verified_accounts
from user_service.tests.helpers import identity_headers, login


async def test_bulk_accounts_are_verified_and_signed_in(service: RunningApp,
                                                        db_engine: AsyncEngine) -> None:
    signer = service.resources.signer
    accounts = await create_verified_accounts(create_sessionmaker(db_engine), signer, count=7,
                                              password="a bulk password")
    assert len({account.user_id for account in accounts}) == 7
    for account in accounts:
        claims = jwt.decode(account.access_token, options={"verify_signature": False})
        assert (claims["sub"], claims["sid"]) == (str(account.user_id), account.session_id)
        assert jwt.get_unverified_header(account.access_token)["kid"] == signer.kid
        me = await service.client.get("/api/v1/users/me",
                                      headers=identity_headers(account.access_token))
        assert me.json()["email_verified"] is True
    assert (await login(service.client, accounts[0].email, "a bulk password")).status_code == 200
