"""Rate limits of the routes that send mail or check codes, in Redis: sign-up, resend and
verification per client address, sign-up and resend also for everyone together (so no one party
can spend the mail quota that real buyers' codes need), and codes checked per e-mail address
per day.

Every counter lives in a fixed window that opens with its first count; Retry-After is the time
left in the window of the counter that refused. A request is counted before its work is done, in
the same atomic step that decides whether it may go on, so a burst cannot slip past a limit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis

from user_service.auth.throttle import Admission, client_network

HOUR = 3600
SIGNUP_WINDOW_SECONDS = HOUR
RESEND_WINDOW_SECONDS = HOUR
VERIFY_WINDOW_SECONDS = 15 * 60
CODE_FAILURES_WINDOW_SECONDS = 24 * HOUR

# A route's per-address counters and its total share one hash tag, so the script that counts
# both runs on a Redis Cluster (its keys must sit in one slot).
SIGNUP_ADDRESS_KEY = "auth:limit:{{signup}}:addr:{network}"
SIGNUP_TOTAL_KEY = "auth:limit:{signup}:total"
RESEND_ADDRESS_KEY = "auth:limit:{{resend}}:addr:{network}"
RESEND_TOTAL_KEY = "auth:limit:{resend}:total"
VERIFY_ADDRESS_KEY = "auth:limit:verify:addr:{network}"
# Per address (mailbox), not per account: a new sign-up replacing an unverified account must not
# give a guesser twenty more tries at its code.
CODE_FAILURES_KEY = "auth:limit:code-fail:{digest}"
# Wrong codes for an address without a pending account, counted as a pending code's are, so the
# 429 after five of them tells nothing about whether the address has an account.
NO_ACCOUNT_CODE_KEY = "auth:limit:code-none:{digest}"
# Sign-up mails to one address per code lifetime: the owner after a squatter, a typo fixed,
# and no more (repeated sign-ups are not a way around the resend interval).
SIGNUP_MAILS_KEY = "auth:limit:signup-mail:{digest}"
SIGNUP_MAILS_PER_CODE_LIFETIME = 2

# KEYS: counters; ARGV[1]: the window, ARGV[1 + i]: the limit of KEYS[i]. Refused without
# counting if any counter is at its limit; otherwise every counter is counted. The TTL check
# repairs a counter left without an expiry (which would refuse for good).
_ADMIT = """
for index, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[index + 1]) then
    return {0, redis.call('TTL', key)}
  end
end
for _, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 or redis.call('TTL', key) < 0 then
    redis.call('EXPIRE', key, ARGV[1])
  end
end
return {1, 0}
"""


@dataclass(frozen=True, kw_only=True)
class RateLimits:
    signup_per_address: int
    signup_total: int
    resend_per_address: int
    resend_total: int
    verify_per_address: int
    code_failures_per_day: int


def code_failures_key(email: str) -> str:
    return CODE_FAILURES_KEY.format(digest=hashlib.sha256(email.encode()).hexdigest())


def signup_mails_key(email: str) -> str:
    return SIGNUP_MAILS_KEY.format(digest=hashlib.sha256(email.encode()).hexdigest())


class RequestLimiter:
    def __init__(self, redis: Redis, limits: RateLimits) -> None:
        self.limits = limits
        self._admit = redis.register_script(_ADMIT)

    async def _check(self, window: int, counters: dict[str, int]) -> Admission:
        allowed, ttl = await self._admit(keys=list(counters), args=[window, *counters.values()])
        return Admission(allowed=bool(allowed), retry_after=max(1, int(ttl)))

    async def signup(self, ip: str) -> Admission:
        network = client_network(ip)
        return await self._check(SIGNUP_WINDOW_SECONDS, {
            SIGNUP_ADDRESS_KEY.format(network=network): self.limits.signup_per_address,
            SIGNUP_TOTAL_KEY: self.limits.signup_total})

    async def resend(self, ip: str) -> Admission:
        network = client_network(ip)
        return await self._check(RESEND_WINDOW_SECONDS, {
            RESEND_ADDRESS_KEY.format(network=network): self.limits.resend_per_address,
            RESEND_TOTAL_KEY: self.limits.resend_total})

    async def verify(self, ip: str) -> Admission:
        return await self._check(VERIFY_WINDOW_SECONDS, {
            VERIFY_ADDRESS_KEY.format(network=client_network(ip)): self.limits.verify_per_address})

    async def wrong_code_without_account(self, email: str, *, max_attempts: int,
                                         window_seconds: int) -> Admission:
        """A code checked for an address without a pending account: refused past the attempts
        a real code allows, within a real code's lifetime."""
        digest = hashlib.sha256(email.encode()).hexdigest()
        return await self._check(window_seconds,
                                 {NO_ACCOUNT_CODE_KEY.format(digest=digest): max_attempts})

    async def signup_mail(self, email: str, *, window_seconds: int) -> Admission:
        """May a sign-up mail its code to this address now?"""
        return await self._check(window_seconds,
                                 {signup_mails_key(email): SIGNUP_MAILS_PER_CODE_LIFETIME})

    async def code_attempt(self, email: str) -> Admission:
        """Counts a code checked for this address; refused once a day's worth were wrong."""
        return await self._check(CODE_FAILURES_WINDOW_SECONDS,
                                 {code_failures_key(email): self.limits.code_failures_per_day})
