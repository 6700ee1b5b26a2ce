"""Argon2id password hashing, always on a dedicated thread pool so the event loop never stalls."""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Self

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

# OWASP's Argon2id baseline: 19 MiB, 2 passes, 1 lane (about 25 ms a hash on one core).
HASHER = PasswordHash((Argon2Hasher(memory_cost=19456, time_cost=2, parallelism=1),))


class PasswordHasher:
    def __init__(self, executor: ThreadPoolExecutor, dummy_hash: str) -> None:
        self._executor = executor
        # Checked for unknown emails, so a login costs the same whether or not the account exists.
        self._dummy_hash = dummy_hash

    @classmethod
    async def create(cls, executor: ThreadPoolExecutor) -> Self:
        loop = asyncio.get_running_loop()
        dummy = await loop.run_in_executor(executor, HASHER.hash, secrets.token_urlsafe(16))
        return cls(executor, dummy)

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, HASHER.hash, password)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """False for a missing hash too, after the same amount of work as a real check."""
        loop = asyncio.get_running_loop()
        target = password_hash if password_hash is not None else self._dummy_hash
        matches = await loop.run_in_executor(self._executor, HASHER.verify, password, target)
        return matches and password_hash is not None
