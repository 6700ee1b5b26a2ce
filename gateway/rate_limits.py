"""Per-user and per-network limits on the requests a crowd could hoard stock with (`POST
/api/v1/orders`, `POST /api/v1/payments`): answered `429 rate_limited` with Retry-After at the
gateway, before the request reaches a service and takes any reserve slot or place in line.

Fixed windows counted in Redis (keys `<PUBSUB_PREFIX>rate:{<route>}:user:<id>` and
`...:net:<network>`), asked once for every request waiting at that moment: one script call per
route counts every key of the batch (INCRBY, PEXPIRE NX, PTTL each), as the revocation list
batches its MGET, so a crowd costs one round trip per batch, not per request. A route's keys
share a hash tag, so one call holds them on a Redis Cluster too. A script, not a pipeline of
those commands: packing and parsing 12,000 commands for an opening's 2,000 requests took the
gateway's loop twice as long as the whole check takes now. Requests counted in one batch are
ranked in arrival order: the first `limit` of a window pass. A network is the client address's /24
(IPv4) or /48 (IPv6), by default. Without Redis the limit is not applied (the order path keeps
its own guards; a limit must never turn a Redis outage into refused buyers).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import socket
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.batching import FlushPerTurn

logger = logging.getLogger("gateway.rate_limits")

LIMITED_ROUTES = frozenset({"POST /api/v1/orders", "POST /api/v1/payments"})

# KEYS: the batch's keys; ARGV[1]: the window (ms), ARGV[1 + i]: how many the batch adds to
# KEYS[i]. Returns each key's total after the batch and its window's remaining ms, flat.
COUNT = """
local window = ARGV[1]
local out = {}
for i, key in ipairs(KEYS) do
  out[2 * i - 1] = redis.call('INCRBY', key, ARGV[i + 1])
  redis.call('PEXPIRE', key, window, 'NX')
  out[2 * i] = redis.call('PTTL', key)
end
return out
"""


def network_of(address: str, *, ipv4_prefix: int, ipv6_prefix: int) -> str:
    """The client's network, as counted: `203.0.113.0/24`, `2001:db8:1::/48`; an address that
    does not parse counts alone."""
    try:
        # IPv4, the crowd's usual case, without ipaddress's objects (a ninth of their cost).
        packed = socket.inet_pton(socket.AF_INET, address)
    except (OSError, ValueError):
        pass
    else:
        mask = (0xFFFFFFFF << (32 - ipv4_prefix)) & 0xFFFFFFFF
        network = (int.from_bytes(packed, "big") & mask).to_bytes(4, "big")
        return f"{socket.inet_ntoa(network)}/{ipv4_prefix}"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address or "unknown"
    prefix = ipv4_prefix if ip.version == 4 else ipv6_prefix
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@dataclass(frozen=True)
class Counted:
    key: str
    limit: int


@dataclass
class _Waiting:
    counts: list[Counted]
    future: asyncio.Future[float | None]


class RateLimiter(FlushPerTurn):
    def __init__(self, redis: Redis | RedisCluster, *, prefix: str, window_seconds: float, per_user: int,
                 per_network: int, ipv4_prefix: int, ipv6_prefix: int) -> None:
        super().__init__()
        self.redis = redis
        self.prefix = prefix
        self.window_ms = max(1, int(window_seconds * 1000))
        self.per_user = per_user
        self.per_network = per_network
        self.ipv4_prefix = ipv4_prefix
        self.ipv6_prefix = ipv6_prefix
        self._waiting: list[_Waiting] = []
        self._count = redis.register_script(COUNT)

    def applies_to(self, route: str) -> bool:
        return route in LIMITED_ROUTES and (self.per_user > 0 or self.per_network > 0)

    async def retry_after(self, route: str, *, user_id: str, client_ip: str) -> float | None:
        """Seconds until the caller may try again, or None: the request may pass."""
        counts = []
        base = f"{self.prefix}rate:{{{route.replace(' ', '')}}}"
        if self.per_user > 0 and user_id:
            counts.append(Counted(f"{base}:user:{user_id}", self.per_user))
        if self.per_network > 0:
            network = network_of(client_ip, ipv4_prefix=self.ipv4_prefix,
                                 ipv6_prefix=self.ipv6_prefix)
            counts.append(Counted(f"{base}:net:{network}", self.per_network))
        if not counts:
            return None
        future: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(counts, future))
        self.schedule_flush()
        return await future

    async def flush(self) -> None:
        batch, self._waiting = self._waiting, []
        # By route (a key's hash tag), then key: how many of the batch count against it.
        asked: dict[str, dict[str, int]] = {}
        for waiting in batch:
            for counted in waiting.counts:
                keys = asked.setdefault(counted.key[:counted.key.index("}")], {})
                keys[counted.key] = keys.get(counted.key, 0) + 1
        try:
            replies = await asyncio.gather(*(
                self._count(keys=list(keys), args=[self.window_ms, *keys.values()])
                for keys in asked.values()))
        except Exception as error:
            # Whatever went wrong (a Redis error, a reply that did not parse, a cluster client's
            # own error), the batch is let through: nobody waiting may be left without an answer.
            logger.warning("rate limits not checked", extra={"error": repr(error)})
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_result(None)
            return
        # Per key: the count before this batch, and how long its window still runs.
        before: dict[str, int] = {}
        left_ms: dict[str, int] = {}
        for keys, reply in zip(asked.values(), replies, strict=True):
            for index, (key, count) in enumerate(keys.items()):
                total, ttl = int(reply[2 * index]), int(reply[2 * index + 1])
                before[key] = total - count
                left_ms[key] = ttl if ttl > 0 else self.window_ms
        for waiting in batch:
            retry: float | None = None
            for counted in waiting.counts:
                before[counted.key] += 1
                if before[counted.key] > counted.limit:
                    wait = max(1, math.ceil(left_ms[counted.key] / 1000))
                    retry = max(retry or 0, wait)
            if not waiting.future.done():
                waiting.future.set_result(retry)
