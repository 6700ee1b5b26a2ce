"""Rate limits of the routes that send mail or check codes, in Redis: sign-up, resend and
verification per client network, codes checked per e-mail address per day, and the mail guard.

There is no cap for everyone together on sign-ups or resends: a few hundred addresses (or one
IPv6 /56) could spend it and deny every sign-up for the hour, renewably for a whole sale. The
client network of these limits is an IPv4 address or an IPv6 /56 (a subscriber's usual
delegation), so one subscriber is one client however many addresses it holds. What the mail
provider allows per hour is kept by the mail guard instead: past `mail_per_hour`, a code's mail
is delayed (queued, sent by tasks.send_delayed_codes as the hour allows), never refused.

Every counter lives in a fixed window that opens with its first count; Retry-After is the time
left in the window of the counter that refused. A request is counted before its work is done, in
the same atomic step that decides whether it may go on, so a burst cannot slip past a limit.

Redis Cluster: each script call's keys share one hash slot (one key, or the `{mail}` tag).
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from user_service.auth.throttle import Admission

HOUR = 3600
SIGNUP_WINDOW_SECONDS = HOUR
RESEND_WINDOW_SECONDS = HOUR
VERIFY_WINDOW_SECONDS = 15 * 60
CODE_FAILURES_WINDOW_SECONDS = 24 * HOUR

# One key per script call (a per-address counter alone), so each runs on a Redis Cluster.
SIGNUP_ADDRESS_KEY = "auth:limit:signup:addr:{network}"
RESEND_ADDRESS_KEY = "auth:limit:resend:addr:{network}"
VERIFY_ADDRESS_KEY = "auth:limit:verify:addr:{network}"
# The mail guard: mails sent this hour, and the addresses whose code waits for the next slot.
MAIL_SENT_KEY = "auth:mail:{mail}:sent"
MAIL_DELAYED_KEY = "auth:mail:{mail}:delayed"
MAIL_WINDOW_SECONDS = HOUR
# IPv6 clients count by this prefix for these limits (the login throttle uses /64).
LIMIT_IPV6_PREFIX = 56
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


# KEYS: mails sent this window, the delayed addresses. ARGV: the hour's mails, the window, the
# address, now. A mail goes now if the hour has room and nobody waits before it (first come,
# first served); otherwise the address waits (once: a second ask keeps its place). 1: send.
_MAIL_NOW = """
local sent = tonumber(redis.call('GET', KEYS[1]) or '0')
if sent < tonumber(ARGV[1]) and redis.call('ZCARD', KEYS[2]) == 0 then
  if redis.call('INCR', KEYS[1]) == 1 or redis.call('TTL', KEYS[1]) < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
  end
  return 1
end
redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[3])
return 0
"""

# The same keys and limit: the longest-waiting address, if the hour has room for its mail.
_NEXT_DELAYED = """
local sent = tonumber(redis.call('GET', KEYS[1]) or '0')
if sent >= tonumber(ARGV[1]) then
  return false
end
local first = redis.call('ZPOPMIN', KEYS[2])
if #first == 0 then
  return false
end
if redis.call('INCR', KEYS[1]) == 1 or redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return first[1]
"""


def limit_network(ip: str) -> str:
    """What one client is for these limits: an IPv4 address (an IPv4-mapped IPv6 address is
    the IPv4 address it maps), or an IPv6 /56."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, LIMIT_IPV6_PREFIX), strict=False))
    return str(address)


@dataclass(frozen=True, kw_only=True)
class RateLimits:
    signup_per_address: int
    resend_per_address: int
    verify_per_address: int
    code_failures_per_day: int
    mail_per_hour: int


def code_failures_key(email: str) -> str:
    return CODE_FAILURES_KEY.format(digest=hashlib.sha256(email.encode()).hexdigest())


def signup_mails_key(email: str) -> str:
    return SIGNUP_MAILS_KEY.format(digest=hashlib.sha256(email.encode()).hexdigest())


class RequestLimiter:
    def __init__(self, redis: Redis, limits: RateLimits) -> None:
        self.limits = limits
        self._admit = redis.register_script(_ADMIT)
        self._mail_now = redis.register_script(_MAIL_NOW)
        self._next_delayed = redis.register_script(_NEXT_DELAYED)

    async def _check(self, window: int, counters: dict[str, int]) -> Admission:
        allowed, ttl = await self._admit(keys=list(counters), args=[window, *counters.values()])
        return Admission(allowed=bool(allowed), retry_after=max(1, int(ttl)))

    async def signup(self, ip: str) -> Admission:
        return await self._check(SIGNUP_WINDOW_SECONDS, {
            SIGNUP_ADDRESS_KEY.format(network=limit_network(ip)): self.limits.signup_per_address})

    async def resend(self, ip: str) -> Admission:
        return await self._check(RESEND_WINDOW_SECONDS, {
            RESEND_ADDRESS_KEY.format(network=limit_network(ip)): self.limits.resend_per_address})

    async def verify(self, ip: str) -> Admission:
        return await self._check(VERIFY_WINDOW_SECONDS, {
            VERIFY_ADDRESS_KEY.format(network=limit_network(ip)): self.limits.verify_per_address})

    async def mail_now(self, email: str) -> bool:
        """The mail guard: True if a code's mail to `email` may go now; False if the address
        now waits for a slot in the hour (tasks.send_delayed_codes mails it then)."""
        return bool(await self._mail_now(
            keys=[MAIL_SENT_KEY, MAIL_DELAYED_KEY],
            args=[self.limits.mail_per_hour, MAIL_WINDOW_SECONDS, email, time.time()]))

    async def next_delayed(self) -> str | None:
        """The address that has waited longest, once the hour has room for its mail (the slot
        is taken)."""
        email = await self._next_delayed(keys=[MAIL_SENT_KEY, MAIL_DELAYED_KEY],
                                         args=[self.limits.mail_per_hour, MAIL_WINDOW_SECONDS])
        if email is None:
            return None
        return email.decode() if isinstance(email, bytes) else str(email)

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
