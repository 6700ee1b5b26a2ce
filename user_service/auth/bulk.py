"""Verified accounts in bulk, each with a login session and an access token signed by the
service's own key: the buyers of a load test or a benchmark, made in seconds instead of each
going through Argon2 and SMTP.

An operator's command, never a route: nothing here can be reached through the gateway or any
HTTP port. It writes to the service's database and signs with the service's key, so it runs
where the service's settings (its environment) are:

    python -m user_service.bulk_accounts --count 2000 --output .data/buyers.json
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.clock import utcnow
from shared.db import Transactions
from user_service.auth.models import LoginSession
from user_service.auth.passwords import HASHER
from user_service.auth.tokens import TokenSigner
from user_service.roles.models import UserRole
from user_service.users.models import User

BATCH = 500


@dataclass(frozen=True)
class BulkAccount:
    user_id: int
    email: str
    session_id: str
    access_token: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def create_verified_accounts(
    sessions: async_sessionmaker[AsyncSession], signer: TokenSigner, *, count: int,
    password: str, email_prefix: str = "bulk", roles: Sequence[str] = (),
) -> list[BulkAccount]:
    """`count` verified accounts sharing one password (hashed once), each signed in once, each
    granted `roles` (a load test's seller lists its product with the `seller` role)."""
    password_hash = HASHER.hash(password)
    run = secrets.token_hex(4)
    accounts: list[BulkAccount] = []
    for start in range(0, count, BATCH):
        emails = [f"{email_prefix}-{run}-{n}@example.com"
                  for n in range(start, min(start + BATCH, count))]
        accounts += await _create_batch(sessions, signer, emails, password_hash, roles)
    return accounts


async def _create_batch(sessions: async_sessionmaker[AsyncSession], signer: TokenSigner,
                        emails: Sequence[str], password_hash: str,
                        roles: Sequence[str]) -> list[BulkAccount]:
    now = utcnow()
    # One transaction for the batch: its accounts, sessions and roles land together or not at all.
    async with Transactions(sessions, lambda session: session).write() as session:
        await session.execute(insert(User), [
            {"email": email, "password_hash": password_hash, "name": "Buyer",
             "email_verified": True, "created_at": now, "updated_at": now}
            for email in emails])
        ids = dict((await session.execute(
            select(User.email, User.id).where(User.email.in_(emails)))).all())
        logins = {email: secrets.token_hex(16) for email in emails}
        await session.execute(insert(LoginSession), [
            {"id": logins[email], "user_id": ids[email], "created_at": now} for email in emails])
        if roles:
            await session.execute(insert(UserRole), [
                {"user_id": ids[email], "role": role, "granted_at": now}
                for email in emails for role in roles])
    return [BulkAccount(user_id=ids[email], email=email, session_id=logins[email],
                        access_token=signer.issue_access_token(user_id=ids[email],
                                                               session_id=logins[email],
                                                               roles=roles))
            for email in emails]
