"""Answers given at the edge: the contract between a service that knows a route's answer for a
while (order_service's `POST /api/v1/orders` for a sold-out product is `409 sold_out`) and the
gateway, which then gives it without forwarding.

The gateway stays generic. A service publishes, for a route (`"POST /api/v1/orders"`) and a
key (the value of one field of the request's JSON body, here `product_id`), a problem answer,
the shape of the requests it applies to, and how long it holds (`ttl_ms`, short: a withdrawal
that is lost costs at most that long). It withdraws the answer by publishing `answer: null`.
Each answer is also kept in Redis under `answer_key` with the same expiry, so a gateway that
starts learns the answers in force (`EdgeAnswers.load`, after subscribing).

A message (JSON) on the channel `<prefix>edge-answers`:

    {"route": "POST /api/v1/orders", "key": "123", "ttl_ms": 2000,
     "answer": {"status": 409, "code": "sold_out", "title": "Sold out", "detail": "..."},
     "shape": {"key_field": "product_id", "int_fields": {"product_id": [1, 9007199254740991],
               "quantity": [1, 100]}, "unless_headers": ["idempotency-key"]}}
    {"route": "POST /api/v1/orders", "key": "123", "answer": null}

An answer applies only to a request whose body is a JSON object with exactly the shape's
integer fields, each within its bounds (what the route would accept as it is), and that carries
none of `unless_headers` (an Idempotency-Key retry must get its first answer back, which only
the service knows). On any doubt the gateway forwards.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from shared.fast_path import is_json, parse_json

logger = logging.getLogger("shared.edge_answers")

ANSWERS_TOPIC = "edge-answers"


def answer_key(prefix: str, slot_tag: str, route: str, key: str) -> str:
    """Where an answer is kept in Redis. `slot_tag` is the hash tag of the state it is derived
    from (`{p:123}`), so the service can write it in the same atomic step on a cluster."""
    return f"{prefix}edge:{slot_tag}:{route} {key}"


def answers_match(prefix: str) -> str:
    return f"{prefix}edge:*"


@dataclass(frozen=True)
class RequestShape:
    key_field: str
    int_fields: dict[str, tuple[int, int]]
    unless_headers: frozenset[bytes]

    def to_json(self) -> dict[str, Any]:
        return {"key_field": self.key_field,
                "int_fields": {name: list(bounds) for name, bounds in self.int_fields.items()},
                "unless_headers": sorted(h.decode() for h in self.unless_headers)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestShape:
        return cls(key_field=str(data["key_field"]),
                   int_fields={str(name): (int(low), int(high))
                               for name, (low, high) in data["int_fields"].items()},
                   unless_headers=frozenset(str(h).lower().encode()
                                            for h in data.get("unless_headers", ())))

    def key_of(self, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> str | None:
        """The request's key when the request has this shape exactly, else None."""
        content_type: str | None = None
        for name, value in headers:
            lowered = name.lower()
            if lowered in self.unless_headers:
                return None
            if lowered == b"content-type":
                content_type = value.decode("latin-1")
        if not is_json(content_type):
            return None
        parsed = parse_json(body)
        if not isinstance(parsed, dict) or parsed.keys() != self.int_fields.keys():
            return None
        for field_name, (low, high) in self.int_fields.items():
            number = parsed[field_name]
            if type(number) is not int or not low <= number <= high:  # bool is an int too
                return None
        return str(parsed[self.key_field])


@dataclass(frozen=True)
class Answer:
    status: int
    code: str
    title: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "code": self.code, "title": self.title,
                "detail": self.detail}


def answer_message(route: str, key: str, answer: Answer | None,
                   shape: RequestShape | None = None, ttl_ms: int | None = None) -> str:
    """The message (and stored value) for an answer, or for its withdrawal (`answer=None`).
    An answer's message needs `ttl_ms`; without it, it is a template whose publisher puts
    `{"ttl_ms":N,` in place of its opening brace (a Lua script that knows the expiry)."""
    body: dict[str, Any] = {"route": route, "key": key,
                            "answer": answer.to_json() if answer else None}
    if answer is not None:
        assert shape is not None, "an answer says which requests it applies to"
        body["shape"] = shape.to_json()
    text = json.dumps(body, separators=(",", ":"))
    if answer is not None and ttl_ms is not None:
        text = f'{{"ttl_ms":{ttl_ms},' + text[1:]
    return text


@dataclass(frozen=True)
class _Held:
    answer: Answer
    shape: RequestShape
    until: float


class EdgeAnswers:
    """The answers in force, as this process heard them: fed by the subscription (`heard`),
    filled at start from Redis (`load`), each forgotten when withdrawn or expired."""

    def __init__(self, *, on_answer: Callable[[], object] | None = None) -> None:
        self._routes: dict[str, dict[str, _Held]] = {}
        # Told when an answer comes in force (not on a withdrawal, nor on a renewal of one in
        # force), after it is kept.
        self._on_answer = on_answer

    def routes(self) -> frozenset[str]:
        return frozenset(route for route, held in self._routes.items() if held)

    def heard(self, raw: str, *, remaining_ms: int | None = None) -> None:
        try:
            message = json.loads(raw)
            route, key = str(message["route"]), str(message["key"])
            answer = message.get("answer")
            if answer is None:
                held = self._routes.get(route)
                if held is not None:
                    held.pop(key, None)
                return
            ttl_ms = int(message["ttl_ms"]) if remaining_ms is None else remaining_ms
            entry = _Held(Answer(int(answer["status"]), str(answer["code"]),
                                 str(answer["title"]), str(answer["detail"])),
                          RequestShape.from_json(message["shape"]),
                          time.monotonic() + ttl_ms / 1000)
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("edge answer message not understood", extra={"raw": raw[:200]})
            return
        if ttl_ms > 0:
            held = self._routes.setdefault(route, {})
            earlier = held.get(key)
            held[key] = entry
            # Only an answer new to this process: a renewal of one in force changes nothing.
            if self._on_answer is not None and (
                    earlier is None or earlier.answer != entry.answer
                    or earlier.until <= time.monotonic()):
                self._on_answer()

    async def load(self, redis: Redis | RedisCluster, prefix: str) -> int:
        """Every answer kept in Redis, with what is left of its expiry. Run after subscribing:
        a message heard meanwhile is newer than what was read, and is applied after it."""
        # Forgotten first: what was withdrawn while the subscription was down is gone. Until the
        # scan ends some answers are missing, and those requests are forwarded: the safe way.
        self._routes = {}
        loaded = 0
        async for name in redis.scan_iter(match=answers_match(prefix), count=1000):
            value, ttl = await redis.get(name), await redis.pttl(name)
            if value is not None and ttl > 0:
                self.heard(value if isinstance(value, str) else value.decode(), remaining_ms=ttl)
                loaded += 1
        return loaded

    def answer_for(self, route: str, headers: Iterable[tuple[bytes, bytes]],
                   body: bytes) -> Answer | None:
        held = self._routes.get(route)
        if not held:
            return None
        # The shape is the same for every key of a route: any entry's tells where the key is.
        shape = next(iter(held.values())).shape
        key = shape.key_of(headers, body)
        if key is None:
            return None
        entry = held.get(key)
        if entry is None or (entry.shape != shape and entry.shape.key_of(headers, body) != key):
            return None
        if time.monotonic() >= entry.until:
            del held[key]
            return None
        return entry.answer
