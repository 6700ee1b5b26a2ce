"""The chaos run's buyers: each orders one unit with an Idempotency-Key, then pays with another
(or walks away, or cancels), and some cancel a paid order (a refund). A request whose answer is
lost (a transport error or time-out, a 5xx, `409 idempotency_key_in_use`, `429`, a `202`
ticket) is sent again with the same key and body, a bounded number of times; some buyers drop
their first answer on purpose (a client time-out shorter than the request). Every attempt is
recorded, so the checker can tell whether each retry got the first answer. After the settle
period every keyed request is sent once more (the replay round): its answer must be the first
one too."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx

Operation = Literal["order", "pay", "cancel"]
CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
# Bounds of one operation's retries: attempts, and seconds from its first attempt (by default
# well past shared.idempotency's STALE_AFTER, after which a key whose first attempt died is
# claimed again).
MAX_ATTEMPTS = 40
OPERATION_SECONDS = 90.0
# Each attempt's own bound: past the gateway's upstream time-out (10 s) so that its 504 is seen.
REQUEST_SECONDS = 12.0
TRANSIENT_CODES = frozenset({"idempotency_key_in_use", "rate_limited"})


@dataclass(frozen=True)
class BuyerPlan:
    buyer: int
    user_id: int
    access_token: str
    arrives_at: float
    then: Literal["pay", "walk_away", "cancel_unpaid"]
    card: str
    refund_after_paying: bool
    drop_first_order_answer: bool
    drop_first_pay_answer: bool


@dataclass(frozen=True)
class CrowdShape:
    walk_away: float = 0.15
    cancel_unpaid: float = 0.1
    declined: float = 0.1
    refund: float = 0.25
    dropped_answers: float = 0.2


def plan_buyers(seed: int, accounts: Sequence[dict[str, Any]], *, arrive_within: float,
                shape: CrowdShape) -> list[BuyerPlan]:
    rng = random.Random(seed + 1)
    plans = []
    for n, account in enumerate(accounts):
        draw = rng.random()
        then: Literal["pay", "walk_away", "cancel_unpaid"] = (
            "walk_away" if draw < shape.walk_away else
            "cancel_unpaid" if draw < shape.walk_away + shape.cancel_unpaid else "pay")
        plans.append(BuyerPlan(
            buyer=n, user_id=int(account["user_id"]), access_token=str(account["access_token"]),
            arrives_at=round(rng.uniform(0, arrive_within), 3), then=then,
            card=CARD_DECLINED if rng.random() < shape.declined else CARD_OK,
            refund_after_paying=rng.random() < shape.refund,
            drop_first_order_answer=rng.random() < shape.dropped_answers,
            drop_first_pay_answer=rng.random() < shape.dropped_answers))
    return plans


@dataclass
class Attempt:
    """One request as the buyer saw it (times in seconds from the sale's start)."""

    buyer: int
    user_id: int
    operation: Operation
    key: str | None
    number: int
    sent: float
    seconds: float
    status: int | None
    code: str | None = None
    # The order's or payment's id and status in a 2xx body.
    resource_id: int | None = None
    resource_status: str | None = None
    error: str | None = None
    dropped: bool = False
    # Sent once more after the settle period, to ask every key for its answer again.
    replay: bool = False

    @property
    def final(self) -> bool:
        """An answer the server is bound to repeat for the same key (not a lost one)."""
        return (self.status is not None and self.status < 500 and self.status not in (202, 429)
                and self.code not in TRANSIENT_CODES)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Crowd:
    gateway: str
    product_id: int
    seed: int
    started_at: float
    retry_for: float = OPERATION_SECONDS
    attempts: list[Attempt] = field(default_factory=list)
    # Every keyed request as first sent, for the replay round.
    keyed: dict[str, tuple[BuyerPlan, Operation, str, dict[str, Any]]] = field(
        default_factory=dict)

    def now(self) -> float:
        return time.monotonic() - self.started_at

    def key(self, plan: BuyerPlan, operation: str) -> str:
        return f"chaos-{self.seed}-{plan.buyer}-{operation}"

    async def run(self, plans: Sequence[BuyerPlan]) -> list[Attempt]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(base_url=self.gateway, limits=limits) as client:
            await asyncio.gather(*(self._buyer(client, plan) for plan in plans))
        return self.attempts

    async def _buyer(self, client: httpx.AsyncClient, plan: BuyerPlan) -> None:
        await asyncio.sleep(max(0.0, plan.arrives_at - self.now()))
        rng = random.Random(self.seed * 100_003 + plan.buyer)
        order = await self._until_final(
            client, plan, "order", "/api/v1/orders", {"product_id": self.product_id,
                                                     "quantity": 1},
            key=self.key(plan, "order"), drop_first=plan.drop_first_order_answer, rng=rng)
        if order is None or order.status != 201 or order.resource_id is None:
            return
        order_id = order.resource_id
        await asyncio.sleep(rng.uniform(0.2, 2.0))
        if plan.then == "walk_away":
            return
        if plan.then == "cancel_unpaid":
            await self._until_final(client, plan, "cancel", f"/api/v1/orders/{order_id}/cancel",
                                    None, key=None, drop_first=False, rng=rng)
            return
        paid = await self._until_final(
            client, plan, "pay", "/api/v1/payments",
            {"order_id": order_id, "card_number": plan.card}, key=self.key(plan, "pay"),
            drop_first=plan.drop_first_pay_answer, rng=rng)
        if (plan.refund_after_paying and paid is not None and paid.status == 201
                and paid.resource_status == "succeeded"):
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            await self._until_final(client, plan, "cancel", f"/api/v1/orders/{order_id}/cancel",
                                    None, key=None, drop_first=False, rng=rng)

    async def _until_final(self, client: httpx.AsyncClient, plan: BuyerPlan,
                           operation: Operation, path: str, body: dict[str, Any] | None, *,
                           key: str | None, drop_first: bool,
                           rng: random.Random) -> Attempt | None:
        """Sends until a final answer, MAX_ATTEMPTS times and OPERATION_SECONDS at most."""
        headers = {"Authorization": f"Bearer {plan.access_token}"}
        if key is not None and body is not None:
            headers["Idempotency-Key"] = key
            self.keyed[key] = (plan, operation, path, body)
        began = time.monotonic()
        for number in range(1, MAX_ATTEMPTS + 1):
            dropped = drop_first and number == 1
            # A dropped answer: the client stops listening while the server works on.
            timeout = rng.uniform(0.02, 0.4) if dropped else REQUEST_SECONDS
            attempt = await self._send(client, plan, operation, path, body, headers,
                                       key=key, number=number, timeout=timeout)
            attempt.dropped = dropped
            self.attempts.append(attempt)
            # A dropped answer is not listened to even when it came in time: the retry must
            # then give the same one.
            if attempt.final and not dropped:
                return attempt
            if time.monotonic() - began > self.retry_for:
                return None
            await asyncio.sleep(rng.uniform(1.0, 3.0))
        return None

    async def replay(self, made: set[str], *, concurrency: int = 20) -> None:
        """Every keyed request that had an answer, or whose key is in `made` (an order or
        payment exists with it), sent once more as it was first sent: after the faults (Redis
        restarted, answers kept or lost), each must still give its first answer. (A key that
        never got one and made nothing is left alone: sent now it would be a new request.)"""
        answered = {a.key for a in self.attempts if a.key is not None and a.final}
        limits = httpx.Limits(max_connections=concurrency)
        gate = asyncio.Semaphore(concurrency)

        async def again(key: str, plan: BuyerPlan, operation: Operation, path: str,
                        body: dict[str, Any]) -> None:
            headers = {"Authorization": f"Bearer {plan.access_token}", "Idempotency-Key": key}
            async with gate:
                attempt = await self._send(client, plan, operation, path, body, headers,
                                           key=key, number=MAX_ATTEMPTS + 1,
                                           timeout=REQUEST_SECONDS)
            attempt.replay = True
            self.attempts.append(attempt)

        async with httpx.AsyncClient(base_url=self.gateway, limits=limits) as client:
            await asyncio.gather(*(again(key, *request)
                                   for key, request in sorted(self.keyed.items())
                                   if key in answered or key in made))

    async def _send(self, client: httpx.AsyncClient, plan: BuyerPlan, operation: Operation,
                    path: str, body: dict[str, Any] | None, headers: dict[str, str], *,
                    key: str | None, number: int, timeout: float) -> Attempt:
        sent = self.now()
        attempt = Attempt(plan.buyer, plan.user_id, operation, key, number, round(sent, 3),
                          0.0, None)
        try:
            response = await client.post(path, json=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as error:
            attempt.error = type(error).__name__
        else:
            attempt.status = response.status_code
            _read_body(attempt, response)
        attempt.seconds = round(self.now() - sent, 3)
        return attempt


def _read_body(attempt: Attempt, response: httpx.Response) -> None:
    try:
        body = response.json()
    except ValueError:
        return
    if not isinstance(body, dict):
        return
    if response.status_code >= 400:
        attempt.code = body.get("code")
    elif isinstance(body.get("id"), int):
        attempt.resource_id = body["id"]
        attempt.resource_status = body.get("status")
