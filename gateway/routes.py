"""The routing table, in one place: public path patterns -> the service that owns them.

Patterns are matched most specific first (exact before prefix, more segments first), so a
prefix can be split between services: `/api/v1/users/{id}/followers` goes to social while
the rest of `/api/v1/users/**` goes to user. `/internal/**` is never routed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ANY = "[^/]+"


@dataclass(frozen=True)
class Route:
    pattern: str
    service: str
    # Methods that need no token on this pattern; every other method needs one.
    public_methods: frozenset[str] = field(default_factory=frozenset)
    # Answers are streamed (server-sent events): relayed as they come (gateway/streams.py).
    stream: bool = False
    # The stream is the same for every client of one URL: public (GET needs no token, and no
    # identity is forwarded), each event a whole state superseding the one before. The gateway
    # then opens one upstream stream per URL and writes it to all its clients
    # (gateway/fanout.py). Never for a stream that depends on who asks (a ticket's).
    shared: bool = False
    # Paths (exact, raw) under the pattern whose POST the service answers once per
    # Idempotency-Key, however often it is sent (API.md): one carrying a key whose connection
    # broke before any answer may be sent again, to the next replica, with the arrival stamped
    # the first time (gateway/proxy.py).
    keyed: frozenset[str] = frozenset()
    # The service holds a GET asking `?wait=N` up to N seconds on purpose (a long poll), N at
    # most this: the gateway waits that much longer for its answer.
    long_poll_seconds: float = 0.0
    # A stream of `<path>/events` whose final state the service publishes for the edge: the
    # gateway holds it itself when the service's answer to `GET <path>` says so
    # (shared/edge_finals.py), else relays it.
    held_at_edge: bool = False

    def __post_init__(self) -> None:
        if self.shared and not (self.stream and "GET" in self.public_methods):
            raise ValueError(f"{self.pattern}: only a public GET stream can be shared")
        if self.held_at_edge and not (self.stream and self.pattern.endswith("/events")):
            raise ValueError(f"{self.pattern}: only a <path>/events stream can be held")

    @property
    def is_prefix(self) -> bool:
        return self.pattern.endswith("/**")

    @property
    def segments(self) -> list[str]:
        base = self.pattern[:-3] if self.is_prefix else self.pattern
        return [s for s in base.split("/") if s]

    def specificity(self) -> tuple[int, int, int]:
        literals = sum(1 for s in self.segments if not s.startswith("{"))
        return (1 if self.is_prefix else 0, -len(self.segments), -literals)

    def compile(self) -> re.Pattern[str]:
        """Matched with fullmatch against the raw path: never ^...$, whose `$` also matches
        before a trailing newline (`/api/v1/auth/login\n` was the public login route)."""
        parts = [ANY if s.startswith("{") else re.escape(s) for s in self.segments]
        body = "/" + "/".join(parts)
        return re.compile(f"{body}(/.*)?" if self.is_prefix else body, re.DOTALL)


def _public(*methods: str) -> frozenset[str]:
    return frozenset(methods)


ROUTES: tuple[Route, ...] = (
    # user_service: accounts and tokens
    Route("/api/v1/auth/signup", "user", _public("POST")),
    Route("/api/v1/auth/verify-email", "user", _public("POST")),
    Route("/api/v1/auth/verify-email/resend", "user", _public("POST")),
    Route("/api/v1/auth/login", "user", _public("POST")),
    Route("/api/v1/auth/refresh", "user", _public("POST")),
    Route("/api/v1/auth/**", "user"),
    Route("/.well-known/jwks.json", "user", _public("GET", "HEAD")),
    Route("/api/v1/users/{id}/followers", "social"),
    Route("/api/v1/users/{id}/following", "social"),
    Route("/api/v1/users/**", "user"),
    # product_service and stock_service share the /products prefix
    Route("/api/v1/products/{id}/stock", "stock", _public("GET", "HEAD")),
    Route("/api/v1/products/{id}/live", "stock", _public("GET", "HEAD"), stream=True,
          shared=True),
    Route("/api/v1/products/{id}", "product", _public("GET", "HEAD")),
    Route("/api/v1/products", "product", _public("GET", "HEAD")),
    Route("/api/v1/products/**", "product"),
    # orders and payments
    Route("/api/v1/orders/tickets/{ticket}/events", "order", stream=True, held_at_edge=True),
    Route("/api/v1/orders/tickets/{ticket}", "order", long_poll_seconds=25.0),
    Route("/api/v1/orders/**", "order", keyed=frozenset({"/api/v1/orders"})),
    Route("/api/v1/payments/**", "payment", keyed=frozenset({"/api/v1/payments"})),
    # social
    Route("/api/v1/posts/**", "social"),
    Route("/api/v1/comments/**", "social"),
    Route("/api/v1/follows/**", "social"),
    Route("/api/v1/feed/**", "social"),
    Route("/api/v1/activities/**", "social"),
)


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    public: bool


class RouteTable:
    def __init__(self, routes: tuple[Route, ...] = ROUTES) -> None:
        ordered = sorted(routes, key=Route.specificity)
        self._compiled = [(route, route.compile()) for route in ordered]

    @property
    def routes(self) -> list[Route]:
        return [route for route, _ in self._compiled]

    def match(self, method: str, raw_path: str) -> RouteMatch | None:
        """`raw_path`: the path as the client sent it, percent-encoding and all (ASGI's
        raw_path), which is what the gateway forwards: an upstream decodes what was matched
        here, and a literal segment spelt with escapes matches nothing."""
        if not is_routable(raw_path):
            return None
        for route, regex in self._compiled:
            if regex.fullmatch(raw_path):
                return RouteMatch(route, method in route.public_methods)
        return None


_DOT_SEGMENT = re.compile(r"(^|/)(\.|%2e){1,2}(/|$)", re.IGNORECASE)
# Raw or percent-encoded C0 controls and DEL: no route has them, and upstreams differ on them.
_CONTROL = re.compile(r"[\x00-\x20\x7f]|%[01][0-9a-f]|%7f", re.IGNORECASE)


def is_routable(raw_path: str) -> bool:
    """Refuse anything an upstream could normalise into another path (encoded slashes and
    backslashes, dot segments, empty segments, control characters) and all of /internal."""
    lowered = raw_path.lower()
    if "%2f" in lowered or "%5c" in lowered or "\\" in raw_path or "//" in raw_path:
        return False
    if _DOT_SEGMENT.search(raw_path) or _CONTROL.search(raw_path):
        return False
    return not (lowered == "/internal" or lowered.startswith("/internal/"))
