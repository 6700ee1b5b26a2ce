"""Failed-login counters in Redis: per email (protects one account) and per client address.

Each counter lives in a fixed window that opens with its first failure and closes
`login_failure_window_seconds` later; Retry-After is the time left in that window.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis

EMAIL_FAILURES_KEY = "auth:login-fail:email:{digest}"
IP_FAILURES_KEY = "auth:login-fail:ip:{ip}"

# INCR and EXPIRE in one script, so a counter can never be left without an expiry
# (which would lock an account out for good). The TTL check repairs such a key too.
_RECORD_FAILURE = """
for i, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 or redis.call('TTL', key) < 0 then
    redis.call('EXPIRE', key, ARGV[1])
  end
end
return 0
"""


@dataclass(frozen=True)
class Counter:
    failures: int
    retry_after: int


@dataclass(frozen=True)
class LoginFailures:
    email: Counter
    ip: Counter


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
        self._record_failure = redis.register_script(_RECORD_FAILURE)

    async def read(self, email: str, ip: str) -> LoginFailures:
        """Both counters in one round trip."""
        email_key, ip_key = email_failures_key(email), ip_failures_key(ip)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(email_key)
            pipe.ttl(email_key)
            pipe.get(ip_key)
            pipe.ttl(ip_key)
            email_count, email_ttl, ip_count, ip_ttl = await pipe.execute()
        return LoginFailures(
            email=self._counter(email_count, email_ttl), ip=self._counter(ip_count, ip_ttl)
        )

    def _counter(self, count: str | None, ttl: int) -> Counter:
        return Counter(
            failures=int(count or 0), retry_after=ttl if ttl > 0 else self.window_seconds
        )

    def email_blocked(self, failures: LoginFailures) -> bool:
        return failures.email.failures >= self.max_failures_per_email

    def ip_blocked(self, failures: LoginFailures) -> bool:
        return failures.ip.failures >= self.max_failures_per_ip

    async def record_failure(self, email: str, ip: str) -> None:
        await self._record_failure(
            keys=[email_failures_key(email), ip_failures_key(ip)], args=[self.window_seconds]
        )

    async def clear_email(self, email: str) -> None:
        await self._redis.delete(email_failures_key(email))
