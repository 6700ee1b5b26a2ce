"""Several replicas behind one name: swarm's dnsrr, a Kubernetes headless Service, compose's
`--scale`. The name resolves to every replica's address; a caller spreads its calls over them,
asks again every DNS_TTL_SECONDS (a replica that died leaves the list, one that was added joins
it), and moves a call whose connection could not be made to the next address.

Both callers of other services pick the address per call with `Replicas`: the gateway
(gateway/upstreams.py) and the services' client (shared/http.py). So a steady stream of calls
over long-lived keep-alive connections still reaches every replica, and a replica that joins
gets its share at once instead of when a connection happens to be opened. `connector` resolves
names for what is still opened by name (the gateway's shared streams).

`SERVICE_HOSTS` (docs/configuration.md) names addresses a name stands for before DNS is asked,
as /etc/hosts would: a test system runs two replicas of a service on 127.0.0.1 and 127.0.0.2
under one name, which no resolver of the machine knows.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from shared.in_order import InOrderConnector

logger = logging.getLogger(__name__)

# How long a name's addresses are used before it is asked again. Kubernetes removes a dead pod's
# address from a headless Service within seconds; swarm's dnsrr at once.
DNS_TTL_SECONDS = 5
# A call moves on after this long without a connection when another address remains to try (an
# address whose host is gone answers nothing: no refusal comes). Past the loop-turn delays of an
# overloaded process, so a connect that did complete is rarely mistaken for a dead replica (and
# if it is, nothing was sent: moving on is still safe).
CONNECT_TIMEOUT_SECONDS = 1.0

Hosts = Mapping[str, Sequence[str]]


class Resolver(AbstractResolver):
    """aiohttp's own resolver, after the names this process was told (SERVICE_HOSTS)."""

    def __init__(self, hosts: Hosts | None = None) -> None:
        self._hosts = {name: [str(ipaddress.ip_address(a)) for a in addresses]
                       for name, addresses in (hosts or {}).items()}
        self._system = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        told = self._hosts.get(host)
        if told is None:
            return await self._system.resolve(host, port, family)
        return [ResolveResult(hostname=host, host=address, port=port, family=address_family(address),
                              proto=0, flags=socket.AI_NUMERICHOST) for address in told]

    async def close(self) -> None:
        await self._system.close()


def address_family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def connector(*, limit: int, keepalive_timeout: float,
              hosts: Hosts | None = None) -> aiohttp.TCPConnector:
    """A pool whose name lookups follow the replicas: asked again every DNS_TTL_SECONDS, new
    connections given to each address in turn, a refused connect tried on the next address;
    connections handed out in the order asked (shared/in_order.py)."""
    return InOrderConnector(limit=limit, keepalive_timeout=keepalive_timeout,
                            ttl_dns_cache=DNS_TTL_SECONDS, resolver=Resolver(hosts))


class Replicas:
    """Every address one name stands for, handed out in turn, one call at a time.

    `turn()` gives the addresses to try for one call: the next one in turn first, then the
    others; an address whose connect failed lately comes last (still tried when nothing else
    answers). The name is asked again once its answer is DNS_TTL_SECONDS old, in the background: calls go
    on with the addresses known meanwhile (only the first lookup, with nothing known yet, is
    waited for, by every call that needs it at once). If the lookup fails, the addresses known so far go
    on being used (a resolver that is down must not take a running system with it)."""

    def __init__(self, host: str, port: int, resolver: AbstractResolver, *,
                 ttl_seconds: float = DNS_TTL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.port = port
        self._resolver = resolver
        self._ttl = ttl_seconds
        self._clock = clock
        self._addresses: list[str] = []
        self._resolved_at = float("-inf")
        self._lookup: asyncio.Future[None] | None = None
        self._next = 0
        self._failed_at: dict[str, float] = {}
        self._answered_at: dict[str, float] = {}
        try:
            self._addresses = [str(ipaddress.ip_address(host))]
            self._resolved_at = float("inf")  # an address literal is never asked about
        except ValueError:
            pass

    async def turn(self) -> list[str]:
        if self._clock() - self._resolved_at >= self._ttl:
            if self._addresses:
                # Asked again in the background: a slow or absent resolver must not hold every
                # call to the name each time its answer grows old.
                self._start_lookup()
            else:
                await self._refresh()
        addresses = self._addresses
        if not addresses:  # the name answered with no address, and none was known before
            raise OSError(f"no address for {self.host}")
        start = self._next % len(addresses)
        self._next = start + 1
        in_turn = addresses[start:] + addresses[:start]
        now = self._clock()
        return sorted(in_turn, key=lambda a: now - self._failed_at.get(a, -self._ttl) < self._ttl)

    def failed(self, address: str) -> None:
        """A connect to `address` failed: the next calls try it last until DNS_TTL_SECONDS pass."""
        self._failed_at[address] = self._clock()

    def answered(self, address: str) -> None:
        """A call to `address` was answered."""
        self._answered_at[address] = self._clock()

    def likeliest(self, addresses: Sequence[str]) -> str:
        """Of `addresses`, the one answered most lately (the first if none was): where a call
        tries last once every address's short connect failed. A live replica's connect can
        time out on a loop too busy to see it complete; a killed replica's, once its 5 s last
        in turn are over, times out again, and it has answered nothing since it died."""
        return max(addresses, key=lambda a: self._answered_at.get(a, float("-inf")))

    def _start_lookup(self) -> asyncio.Future[None]:
        if self._lookup is None or self._lookup.done():
            self._lookup = asyncio.ensure_future(self._resolve())
        return self._lookup

    async def _refresh(self) -> None:
        lookup = self._start_lookup()
        try:
            await asyncio.shield(lookup)
        finally:
            if self._lookup is lookup and lookup.done():
                self._lookup = None

    async def _resolve(self) -> None:
        try:
            found = await self._resolver.resolve(self.host, self.port, socket.AF_UNSPEC)
        except OSError as error:
            if not self._addresses:
                raise
            logger.warning("name lookup failed; keeping the addresses known",
                           extra={"host": self.host, "error": repr(error)})
            found = []
        addresses = list(dict.fromkeys(result["host"] for result in found))
        if addresses:
            self._addresses = addresses
            self._failed_at = {a: t for a, t in self._failed_at.items() if a in addresses}
            self._answered_at = {a: t for a, t in self._answered_at.items() if a in addresses}
        self._resolved_at = self._clock()


def url_host(address: str) -> str:
    """An address as it stands in a URL (an IPv6 address in brackets)."""
    return f"[{address}]" if ":" in address else address
