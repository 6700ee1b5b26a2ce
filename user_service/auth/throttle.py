"""Failed-login counters in Redis, per (email, client address) and per client address, and the
account-wide count of failures from everywhere, which is a signal, never a lock.

Both locks are checked before any password is hashed, so a refused attempt costs no Argon2 work,
and both key on the client address: a stranger's failures never lock the owner out of an account,
and a crowd that signs in successfully from one office or carrier NAT is never throttled (only
failures count). IPv6 clients count by their /64, which one subscriber usually holds whole.

An address past its failures (a carrier NAT with a guesser behind it) does not lock everyone
behind it out: an (email, address) pair that signed in successfully before (remembered for
`known_pair_seconds`) keeps signing in as if nothing happened; every other attempt from there
goes through a slow lane, one password check per `slowed_interval_seconds` for the address,
the rest 429 with a Retry-After of that lane. Every failure closes the lane for one interval
again, so a guesser there gets one guess per interval, shared with everyone else.

Redis Cluster: every script's keys share one hash slot, the client network's ({network} in
the key), so each script runs on one node.

Each counter lives in a fixed window that opens with its first count and closes
`login_failure_window_seconds` later; Retry-After is the time left in that window.

An attempt on (email, address) is counted before its password is checked, in the same atomic step
that decides whether it may be checked at all, so a burst of concurrent guesses cannot all slip in
under the limit; a right password then clears that count. The address counter counts failures
only, after the check (counting attempts would throttle a crowd signing in at once), so a burst
from one address can pass its limit by as many guesses as are in flight at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from dataclasses import dataclass

from prometheus_client import Counter
from redis.asyncio import Redis

logger = logging.getLogger("user_service.auth.throttle")

# {network}: the hash tag that puts an address's keys in one Redis Cluster slot, so one script
# reads them all.
PAIR_ATTEMPTS_KEY = "auth:login-fail:{{{network}}}:pair:{digest}"
ADDRESS_FAILURES_KEY = "auth:login-fail:{{{network}}}:addr"
KNOWN_PAIR_KEY = "auth:login-known:{{{network}}}:{digest}"
SLOW_LANE_KEY = "auth:login-fail:{{{network}}}:slow"
ACCOUNT_FAILURES_KEY = "auth:login-fail:email:{digest}"

# KEYS: the address's failures, the (email, address) attempts, the pair's "signed in before"
# mark, the address's slow lane. ARGV: the address's and the pair's limits, the window, the
# slow lane's interval (ms). Over the address's limit, a pair signed in before goes on, and any
# other attempt needs the slow lane (refused without counting when it is closed, with its time
# left in seconds, rounded up); then the attempt is counted and refused if it goes past the
# pair's limit. The TTL check repairs a key left without one.
_ADMIT = """
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
if failures >= tonumber(ARGV[1]) and redis.call('EXISTS', KEYS[3]) == 0 then
  if not redis.call('SET', KEYS[4], 1, 'PX', ARGV[4], 'NX') then
    return {0, math.ceil(redis.call('PTTL', KEYS[4]) / 1000)}
  end
end
local attempts = redis.call('INCR', KEYS[2])
local ttl = redis.call('TTL', KEYS[2])
if attempts == 1 or ttl < 0 then
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  ttl = tonumber(ARGV[3])
end
if attempts > tonumber(ARGV[2]) then
  return {0, ttl}
end
return {1, 0}
"""

# INCR and EXPIRE in one script, so a counter can never be left without an expiry (which would
# lock an address out for good). KEYS[2], when given, is the address's slow lane: closed for one
# interval (ARGV[3], ms) by a failure past the address's limit (ARGV[2]). Returns the count.
_COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
if KEYS[2] and count >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], 1, 'PX', ARGV[3])
end
return count
"""


@dataclass(frozen=True)
class Admission:
    allowed: bool
    retry_after: int


def client_network(ip: str) -> str:
    """What an address counts as: itself for IPv4, its /64 for IPv6 (an IPv4-mapped IPv6
    address is the IPv4 address it maps)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _digest(*parts: str) -> str:
    # Hashed so Redis never holds a readable list of addresses under attack.
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def pair_attempts_key(email: str, ip: str) -> str:
    network = client_network(ip)
    return PAIR_ATTEMPTS_KEY.format(network=network, digest=_digest(email, network))


def known_pair_key(email: str, ip: str) -> str:
    network = client_network(ip)
    return KNOWN_PAIR_KEY.format(network=network, digest=_digest(email, network))


def address_failures_key(ip: str) -> str:
    return ADDRESS_FAILURES_KEY.format(network=client_network(ip))


def slow_lane_key(ip: str) -> str:
    return SLOW_LANE_KEY.format(network=client_network(ip))


def account_failures_key(email: str) -> str:
    return ACCOUNT_FAILURES_KEY.format(digest=_digest(email))


class LoginFailureMetrics:
    """The account-wide signal as Prometheus counters (registered on the app's /metrics)."""

    def __init__(self) -> None:
        self.failures = Counter(
            "user_login_failures_total",
            "Failed password checks (login and password change)", registry=None)
        self.on_targeted_accounts = Counter(
            "user_login_failures_on_targeted_accounts_total",
            "Failed password checks on an account that has failed more often than the "
            "per-address limit, from all addresses together, within the window", registry=None)


class LoginThrottle:
    def __init__(
        self,
        redis: Redis,
        *,
        max_failures_per_email: int,
        max_failures_per_ip: int,
        window_seconds: int,
        metrics: LoginFailureMetrics,
        slowed_interval_seconds: float = 1.0,
        known_pair_seconds: int = 30 * 24 * 3600,
    ) -> None:
        self._redis = redis
        self.max_failures_per_email = max_failures_per_email
        self.max_failures_per_ip = max_failures_per_ip
        self.window_seconds = window_seconds
        self.slowed_interval_ms = max(1, int(slowed_interval_seconds * 1000))
        self.known_pair_seconds = known_pair_seconds
        self.metrics = metrics
        self._admit = redis.register_script(_ADMIT)
        self._count = redis.register_script(_COUNT)

    async def admit(self, email: str, ip: str) -> Admission:
        """May a password be checked for `email` from `ip`? Counts the attempt if so."""
        allowed, ttl = await self._admit(
            keys=[address_failures_key(ip), pair_attempts_key(email, ip),
                  known_pair_key(email, ip), slow_lane_key(ip)],
            args=[self.max_failures_per_ip, self.max_failures_per_email, self.window_seconds,
                  self.slowed_interval_ms])
        return Admission(allowed=bool(allowed), retry_after=max(1, int(ttl)))

    async def count_failure(self, email: str, ip: str, *, user_id: int | None) -> None:
        """A wrong password: one more failure for the address, and for the account's signal."""
        # One script per slot: the address's counter (and its slow lane) and the account's sit in
        # different hash slots (a cluster refuses a script across slots).
        _, account = await asyncio.gather(
            self._count(keys=[address_failures_key(ip), slow_lane_key(ip)],
                        args=[self.window_seconds, self.max_failures_per_ip,
                              self.slowed_interval_ms]),
            self._count(keys=[account_failures_key(email)], args=[self.window_seconds]))
        self.metrics.failures.inc()
        if int(account) > self.max_failures_per_email:
            self.metrics.on_targeted_accounts.inc()
            if int(account) % self.max_failures_per_email == 1:
                # A line when the count passes the limit, then one per limit's worth more.
                logger.warning("many failed logins for one account, from all addresses", extra={
                    "user_id": user_id, "failures": int(account),
                    "window_seconds": self.window_seconds})

    async def clear(self, email: str, ip: str) -> None:
        """A right password: the (email, address) count starts over, and the pair is known."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(pair_attempts_key(email, ip))
            pipe.set(known_pair_key(email, ip), 1, ex=self.known_pair_seconds)
            await pipe.execute()
