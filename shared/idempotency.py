"""`Idempotency-Key` with Stripe's semantics, for the routes that take stock or money (POST
/orders, POST /payments).

- The key is stored with (user, fingerprint of the request) before any side effect.
- A retry with the same key and body returns the first answer: same status, same body.
- The same key with another body is `422 idempotency_key_reused`.
- A retry while the first is still running is `409 idempotency_key_in_use` with Retry-After: the
  client asks again in a moment; the request is never run twice at once. The claim is a lease:
  the process running the first attempt renews it every `RENEW_EVERY` while the work runs, so a
  first attempt that died without an answer (its process killed) stops blocking the key
  `STALE_AFTER` after its last renewal, not after a time any work might take.
- An answer of 5xx is not kept: the key is freed so that a retry can do the work.
- Keys are kept `ttl` (at least 24 h).
- With a time budget (`answer_within`), the request is answered in time whatever its work still
  waits for: past the budget it gets `503 upstream_unavailable` (Retry-After: 1, "still being
  made") while the work goes on; the key stays claimed by it, so a retry meanwhile is told to
  wait (409) and a retry after it ended gets its answer, never a second one (`StillWorking`).

The keys live in Redis, so that the sale's refusals (409 sold_out) stay free of MySQL work even
when clients send keys. Redis is the fast gate here too, not the truth: the resource a request
creates (an order, a payment) carries its key under a unique (user, key) index, and a key
claimed afresh is first looked up there (`made_before`) before any work: a retry whose first
answer Redis lost (a crash, a failover, FLUSHDB) gets what the first request made, never a
refusal that first request caused (purchase_limit_exceeded, invalid_state) nor a second one.
A key claimed afresh is rare (first use, or a lost answer), so the sale's refusals stay free of
MySQL work only for requests without a key or with a stored answer; see `once`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header
from pydantic import BaseModel
from redis.asyncio import Redis

from shared.errors import (
    Conflict,
    ProblemError,
    ServiceUnavailable,
    ValidationFailed,
    problem_document,
)

HEADER = "Idempotency-Key"
STALE_AFTER = timedelta(seconds=6)
# A claim in work is renewed this often (a process whose loop stalls longer than STALE_AFTER
# loses its claim: a retry may run beside it, and the resource's unique (user, key) index in
# the database still lets only one of them make anything).
RENEW_EVERY = timedelta(seconds=2)
MIN_TTL = timedelta(hours=24)
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]{1,255}")

# KEYS: the key's hash; ARGV: fingerprint, now_ms, stale_ms, ttl_s.
# Answers {'claimed'}, {'reused'}, {'in_use'} or {'answer', status, body}.
_CLAIM = """
local fp = redis.call('HGET', KEYS[1], 'fp')
if not fp then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'started', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return {'claimed'}
end
if fp ~= ARGV[1] then return {'reused'} end
local status = redis.call('HGET', KEYS[1], 'status')
if status then return {'answer', status, redis.call('HGET', KEYS[1], 'body')} end
if tonumber(ARGV[2]) - tonumber(redis.call('HGET', KEYS[1], 'started')) < tonumber(ARGV[3]) then
  return {'in_use'}
end
redis.call('HSET', KEYS[1], 'started', ARGV[2])
return {'claimed'}
"""
# KEYS: the key's hash; ARGV: fingerprint. A claim still in work, renewed (by Redis's clock).
_RENEW = """
if redis.call('HGET', KEYS[1], 'fp') == ARGV[1] and redis.call('HEXISTS', KEYS[1], 'status') == 0
then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'started', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  return 1
end
return 0
"""
# KEYS: the key's hash; ARGV: fingerprint. Frees a key that has no answer (yet) for a retry.
_FORGET = """
if redis.call('HGET', KEYS[1], 'fp') == ARGV[1] and redis.call('HEXISTS', KEYS[1], 'status') == 0
then return redis.call('DEL', KEYS[1]) end
return 0
"""


class IdempotencyKeyReused(ProblemError):
    status = 422
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used with another request"


class IdempotencyKeyInUse(Conflict):
    code = "idempotency_key_in_use"
    title = "A request with this Idempotency-Key is still being processed"

    def __init__(self) -> None:
        super().__init__("Retry in a moment: the first request with this key is still running.",
                         headers={"Retry-After": "1"})


class StillWorking(ServiceUnavailable):
    title = "Still being made"

    def __init__(self) -> None:
        super().__init__("The request's time ran out before its work ended; the work goes on. "
                         "Ask again with the same Idempotency-Key for its answer.",
                         headers={"Retry-After": "1"})


async def idempotency_key(
    key: Annotated[str | None, Header(alias=HEADER, description=(
        "Optional; 1..255 printable ASCII. A retry with the same key and body by the same user "
        "returns the first answer."),
        # Documented only (the check below answers in its own words): a client built from the
        # OpenAPI document must know which keys are refused.
        json_schema_extra={"pattern": f"^{_PRINTABLE_ASCII.pattern}$", "maxLength": 255,
                           "minLength": 1})] = None,
) -> str | None:
    if key is not None and not _PRINTABLE_ASCII.fullmatch(key):
        raise ValidationFailed("Idempotency-Key must be 1 to 255 printable ASCII characters.",
                               loc=("header", HEADER))
    return key


IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]


def is_valid_key(key: str) -> bool:
    """What idempotency_key accepts (for a layer in front of the route)."""
    return _PRINTABLE_ASCII.fullmatch(key) is not None


def fingerprint(body: Any, secret: bytes | None = None) -> str:
    """Of the request body as parsed (so key order and white space do not matter). With a
    secret, an HMAC: a body holding something guessable and secret (a card number) cannot be
    found again by trying candidates against the stored fingerprint."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
    if secret is not None:
        return hmac.new(secret, canonical, hashlib.sha256).hexdigest()
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: Any


@dataclass(frozen=True)
class Claim:
    """What a request holds once it may run: the key, and its request's fingerprint."""

    user_id: int
    key: str
    fingerprint: str


# What a claim's (user, key) made before, from the database the resource lives in: None if
# nothing; raises IdempotencyKeyReused if it was made from another request body.
MadeBefore = Callable[[Claim], Awaitable[BaseModel | None]]


class IdempotencyKeys:
    def __init__(self, redis: Redis, *, namespace: str, ttl: timedelta = MIN_TTL,
                 fingerprint_secret: bytes | None = None) -> None:
        self.redis = redis
        self.namespace = namespace
        self.fingerprint_secret = fingerprint_secret
        self.ttl = max(ttl, MIN_TTL)
        self._claim = redis.register_script(_CLAIM)
        self._forget = redis.register_script(_FORGET)
        self._renew = redis.register_script(_RENEW)
        # Claims this process holds while their work runs (Redis key -> fingerprint), renewed
        # by one task while there are any.
        self._held: dict[str, str] = {}
        self._renewing: asyncio.Task[None] | None = None
        # Work that outlived its request's time budget, still running (see `once`).
        self._finishing: set[asyncio.Task[Any]] = set()

    def _redis_key(self, user_id: int, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"idem:{self.namespace}:{user_id}:{digest}"

    async def claim(self, claim: Claim) -> StoredAnswer | None:
        """None: run the request, then `remember` or `forget`. Else the first answer, again."""
        seconds, micros = await self.redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        reply = await self._claim(
            keys=[self._redis_key(claim.user_id, claim.key)],
            args=[claim.fingerprint, now_ms, int(STALE_AFTER.total_seconds() * 1000),
                  int(self.ttl.total_seconds())])
        word = reply[0]
        if word == "claimed":
            self._hold(claim)
            return None
        if word == "reused":
            raise IdempotencyKeyReused()
        if word == "in_use":
            raise IdempotencyKeyInUse()
        return StoredAnswer(int(reply[1]), json.loads(reply[2]))

    def _hold(self, claim: Claim) -> None:
        self._held[self._redis_key(claim.user_id, claim.key)] = claim.fingerprint
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.create_task(self._renew_held())

    def _release(self, claim: Claim) -> None:
        self._held.pop(self._redis_key(claim.user_id, claim.key), None)

    async def _renew_held(self) -> None:
        """Renews every claim held here until there are none."""
        while self._held:
            await asyncio.sleep(RENEW_EVERY.total_seconds())
            await self.renew()

    async def renew(self) -> None:
        """One round of renewals: every claim this process still works on is fresh again."""
        held = list(self._held.items())
        results = await asyncio.gather(
            *(self._renew(keys=[key], args=[fp]) for key, fp in held), return_exceptions=True)
        for (key, _), result in zip(held, results, strict=True):
            if result == 0:
                self._held.pop(key, None)  # answered or forgotten meanwhile

    async def remember(self, claim: Claim, answer: StoredAnswer) -> None:
        self._release(claim)
        key = self._redis_key(claim.user_id, claim.key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"status": answer.status,
                                    "body": json.dumps(answer.body, default=str)})
            pipe.expire(key, int(self.ttl.total_seconds()))
            await pipe.execute()

    async def forget(self, claim: Claim) -> None:
        self._release(claim)
        await self._forget(keys=[self._redis_key(claim.user_id, claim.key)],
                           args=[claim.fingerprint])

    async def once(self, user_id: int, key: str | None, request: BaseModel,
                   work: Callable[[Claim | None], Awaitable[BaseModel]], *,
                   made_before: MadeBefore, answer_within: float | None = None) -> StoredAnswer:
        """201 and what `work` made, or its refusal; with a key, at most once and the same
        again: claimed before any side effect, then looked up in the database (`made_before`:
        what this user's key made, or None; IdempotencyKeyReused for another body), the answer
        (a 4xx refusal included) kept for replays, a 5xx or any other failure forgotten so a
        retry does the work.

        `answer_within` (seconds): past it the caller gets StillWorking while the work goes on
        to its end, and keeps the key claimed until then (its answer is kept as it would have
        been): a caller that gave up is never answered for work that may still succeed."""
        if key is None:
            async def made_without_key() -> StoredAnswer:
                return StoredAnswer(201, (await work(None)).model_dump(mode="json"))
            return await self._within(made_without_key(), answer_within)
        claim = Claim(user_id, key, fingerprint(request.model_dump(mode="json"),
                                                self.fingerprint_secret))
        stored = await self.claim(claim)
        if stored is not None:
            return stored
        return await self._within(self._answer_kept(claim, work, made_before), answer_within)

    async def _answer_kept(self, claim: Claim, work: Callable[[Claim | None], Awaitable[BaseModel]],
                           made_before: MadeBefore) -> StoredAnswer:
        try:
            made = await made_before(claim) or await work(claim)
        except ProblemError as problem:
            if problem.status >= 500:
                await self.forget(claim)
            else:
                await self.remember(claim, problem_answer(problem))
            raise
        except BaseException:
            await self.forget(claim)
            raise
        answer = StoredAnswer(201, made.model_dump(mode="json"))
        await self.remember(claim, answer)
        return answer

    async def _within(self, answering: Awaitable[StoredAnswer],
                      seconds: float | None) -> StoredAnswer:
        if seconds is None:
            return await answering
        task = asyncio.ensure_future(answering)
        self._finishing.add(task)
        task.add_done_callback(_finished)
        task.add_done_callback(self._finishing.discard)
        try:
            # Shielded: the work is not cut short when its caller stops waiting for it (it may
            # hold units or a charge that only its own end settles).
            return await asyncio.wait_for(asyncio.shield(task), max(seconds, 0.0))
        except TimeoutError:
            raise StillWorking() from None

    async def drain(self, timeout: float) -> None:
        """Waits (up to `timeout`) for the work that outlived its requests, on shutdown."""
        if self._finishing:
            await asyncio.wait(set(self._finishing), timeout=timeout)


def _finished(task: asyncio.Future[Any]) -> None:
    """Its outcome was kept or forgotten by `_answer_kept`; a failure after its caller left has
    nobody else to tell (and must not be logged by asyncio as never retrieved)."""
    if not task.cancelled():
        task.exception()


def problem_answer(problem: ProblemError) -> StoredAnswer:
    """A refusal as it is kept for replays (a 5xx is never kept: see `forget`)."""
    return StoredAnswer(problem.status, problem_document(
        problem.status, problem.code, problem.title, problem.detail, problem.extra))
