"""Failed-login counters in Redis: per email (protects one account) and per client address.

Each counter lives in a fixed window that opens with its first count and closes
`login_failure_window_seconds` later; Retry-After is the time left in that window.

An attempt on an account is counted before its password is checked, in the same atomic step
that decides whether it may be checked at all, so a burst of concurrent guesses cannot all
slip in under the limit; a right password then clears the account's count. The address
counter only ever counts failures: a right password is never refused for its address.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis

EMAIL_FAILURES_KEY = "auth:login-fail:email:{digest}"
IP_FAILURES_KEY = "auth:login-fail:ip:{ip}"

# INCR and EXPIRE in one script, so a counter can never be left without an expiry
# (which would lock an account out for good). The TTL check repairs such a key too.
_COUNT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if count == 1 or ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


@dataclass(frozen=True)
class Count:
    """A counter just after it was incremented; `blocked` if it went past its limit."""

    blocked: bool
    retry_after: int


def email_failures_key(email: str) -> str:
    # Hashed so Redis never holds a readable list of addresses under attack.
    return EMAIL_FAILURES_KEY.format(digest=hashlib.sha256(email.encode()).hexdigest())


def ip_failures_key(ip: str) -> str:
    return IP_FAILURES_KEY.format(ip=ip)


class LoginThrottle:
    def __init__(
        self,
        redis: Redis,
        *,
        max_failures_per_email: int,
        max_failures_per_ip: int,
        window_seconds: int,
    ) -> None:
        self._redis = redis
        self.max_failures_per_email = max_failures_per_email
        self.max_failures_per_ip = max_failures_per_ip
        self.window_seconds = window_seconds
        self._count = redis.register_script(_COUNT)

    async def _increment(self, key: str, limit: int) -> Count:
        count, ttl = await self._count(keys=[key], args=[self.window_seconds])
        return Count(blocked=int(count) > limit, retry_after=int(ttl))

    async def count_attempt(self, email: str) -> Count:
        """Counts a password check on the account; blocked once the limit's failures are in."""
        return await self._increment(email_failures_key(email), self.max_failures_per_email)

    async def count_address_failure(self, ip: str) -> Count:
        return await self._increment(ip_failures_key(ip), self.max_failures_per_ip)

    async def clear_email(self, email: str) -> None:
        await self._redis.delete(email_failures_key(email))
