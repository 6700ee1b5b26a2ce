"""Header policy: what the gateway never forwards, which headers only it may set, and how it
resolves a client's address and rewrites an upstream's redirect."""

from __future__ import annotations

from starlette.types import Scope

from shared.contracts import IDENTITY_SIGNATURE_HEADER

# Hop-by-hop headers (RFC 9110 7.6.1) and headers the gateway alone may set.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length", b"expect",
})
IDENTITY = frozenset({
    b"x-user-id", b"x-session-id", b"x-user-roles", b"x-request-id", b"x-forwarded-for",
    b"x-real-ip", b"forwarded", b"x-forwarded-host", b"x-forwarded-proto",
    IDENTITY_SIGNATURE_HEADER.lower().encode(),
})
RESPONSE_DROP = frozenset({
    b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"date", b"server",
    b"x-request-id", b"upgrade", b"trailer",
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


def client_address(scope: Scope, trusted_proxy_count: int) -> str:
    """The socket peer, or the X-Forwarded-For entry added by the farthest trusted proxy."""
    peer = scope.get("client")
    peer_host = peer[0] if peer else "unknown"
    if trusted_proxy_count == 0:
        return str(peer_host)
    entries: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            entries.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
    if len(entries) >= trusted_proxy_count:
        return entries[-trusted_proxy_count]
    return str(peer_host)


def relative_location(location: bytes, base_url: str) -> bytes:
    """An upstream's redirect to its own address (built from the Host the gateway sent, as
    FastAPI's trailing-slash redirect is), made relative: clients never see a private address."""
    base = base_url.rstrip("/").encode()
    rest = location[len(base):]
    if location.startswith(base) and rest[:1] in (b"", b"/", b"?"):
        return rest if rest.startswith(b"/") else b"/" + rest
    return location
