"""Header policy: what the gateway never forwards, which headers only it may set, and how it
resolves a client's address and rewrites an upstream's redirect."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

from shared.contracts import ARRIVED_AT_HEADER, IDENTITY_CALLER_HEADER, IDENTITY_SIGNATURE_HEADER
from shared.tracing import TRACE_CONTEXT_HEADERS

# Hop-by-hop headers (RFC 9110 7.6.1) and headers the gateway alone may set.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length", b"expect",
})
IDENTITY = frozenset({
    b"x-user-id", b"x-session-id", b"x-user-roles", b"x-request-id", b"x-forwarded-for",
    b"x-real-ip", b"forwarded", b"x-forwarded-host", b"x-forwarded-proto",
    IDENTITY_SIGNATURE_HEADER.lower().encode(), IDENTITY_CALLER_HEADER.lower().encode(),
    ARRIVED_AT_HEADER.lower().encode(),
    # The gateway starts every trace (its aiohttp client sends its own traceparent while
    # tracing is on); a client's trace context never reaches a service, which would believe it.
    *TRACE_CONTEXT_HEADERS,
})
RESPONSE_DROP = frozenset({
    b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"date", b"server",
    b"x-request-id", b"upgrade", b"trailer",
    # Between a service and the gateway only (shared/contracts.py NOT_READ_HEADER,
    # EDGE_FINAL_HEADER).
    b"x-request-not-read", b"x-edge-final",
})


def is_identity_header(name: bytes) -> bool:
    """`name` is lower case. Some servers (CGI-style mappings, some proxies) fold `_` into `-`,
    so `x_user_id` is as much an identity header as `x-user-id`."""
    canonical = name.replace(b"_", b"-")
    return canonical in IDENTITY or canonical.startswith(b"x-internal-")

# A HEAD answer has no body; its Content-Length is the upstream's, describing the GET body.
HEAD_RESPONSE_DROP = RESPONSE_DROP - {b"content-length"}


def connection_options(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The header names a request's Connection header lists (lower case)."""
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(part.strip().lower() for part in value.split(b",") if part.strip())
    return frozenset(named)


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# More X-Forwarded-For entries than this are not read: no real chain of proxies is that long.
MAX_FORWARDED_ENTRIES = 32


def parse_address(raw: str) -> Address | None:
    """An IPv4 or IPv6 address as written, nothing else (no port, no name, no brackets)."""
    try:
        address = ipaddress.ip_address(raw.strip())
    except ValueError:
        return None
    # An IPv4-mapped IPv6 address is the IPv4 address it carries (one client, one bucket).
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The networks of the proxies in front of the gateway (GATEWAY_TRUSTED_PROXY_NETWORKS):
    only a peer inside them is believed about who connected to it."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(network, strict=False) for network in networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: Address) -> bool:
        return any(address in network for network in self.networks)


def client_address(scope: Scope, proxies: TrustedProxies) -> str:
    """The socket peer, unless it is a trusted proxy: then X-Forwarded-For is read from the
    right (each proxy appends the peer it saw), past every trusted proxy, to the first address
    that is not one. An entry that is not an address ends the walk at the last trusted hop: what
    lies beyond it is anyone's claim."""
    peer = scope.get("client")
    peer_host = str(peer[0]) if peer else "unknown"
    if not proxies:
        return peer_host
    current = parse_address(peer_host)
    if current is None or current not in proxies:
        return peer_host
    entries: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            entries.extend(value.decode("latin-1").split(","))
    for entry in reversed(entries[-MAX_FORWARDED_ENTRIES:]):
        address = parse_address(entry)
        if address is None:
            break
        current = address
        if address not in proxies:
            break
    return str(current)


def relative_location(location: bytes, base_url: str) -> bytes:
    """An upstream's redirect to its own address (built from the Host the gateway sent, as
    FastAPI's trailing-slash redirect is), made relative: clients never see a private address."""
    base = base_url.rstrip("/").encode()
    rest = location[len(base):]
    if location.startswith(base) and rest[:1] in (b"", b"/", b"?"):
        return rest if rest.startswith(b"/") else b"/" + rest
    return location
