"""The simulator's ledger of charges, its card rules and its webhooks.

Card rules (the contract's test cards): 4242424242424242 always succeeds, 4000000000000002 is
always declined with card_declined, any other card is declined with processor_declined at the
decline rate. The ledger lives in the process's memory: it is the processor's own truth while it
runs (GET /_sim/charges), which a chaos run checks payment_service's records against.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from payment_service.payments.processor_api import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Charge,
    ChargeEvent,
    ChargeRequest,
    ChargeStatus,
    EventType,
    FailureCode,
    webhook_signature,
)
from payment_service.simulator.settings import Faults
from shared.clock import utcnow
from shared.tracing import client_trace_configs

logger = logging.getLogger("payment_service.simulator")

ALWAYS_SUCCEEDS = "4242424242424242"
ALWAYS_DECLINED = "4000000000000002"
MAX_RETRY_SECONDS = 30.0
EVENT_OF: dict[ChargeStatus, EventType] = {
    "succeeded": "charge.succeeded", "declined": "charge.declined",
    "voided": "charge.voided", "refunded": "charge.refunded",
}


class KeyReused(Exception):
    """The idempotency key was first used with another amount or reference."""


class ChargePending(Exception):
    """A pending charge cannot be refunded yet."""


@dataclass
class ChargeRecord:
    id: str
    key: str
    reference: str
    amount: int
    status: ChargeStatus
    failure_code: FailureCode | None
    created_at: datetime
    updated_at: datetime
    # What a pending charge turns into when its outcome arrives.
    outcome: ChargeStatus = "succeeded"
    outcome_code: FailureCode | None = None

    def view(self) -> Charge:
        return Charge(id=self.id, idempotency_key=self.key, reference=self.reference,
                      amount=self.amount, status=self.status,
                      failure_code=self.failure_code,
                      created_at=self.created_at, updated_at=self.updated_at)


class WebhookSender:
    """Delivers every event until payment_service answers 2xx; duplicates and holds back some,
    as the faults say."""

    def __init__(self, *, url: str, secret: bytes, retry_seconds: float,
                 rng: random.Random) -> None:
        self.url = url
        self.secret = secret
        self.retry_seconds = retry_seconds
        self.rng = rng
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> WebhookSender:
        # Traced while tracing is on: a webhook's delivery joins the trace of the charge it is
        # about (its task is started inside that request).
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5),
                                              trace_configs=client_trace_configs())
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def send(self, charge: Charge, faults: Faults) -> None:
        event = ChargeEvent(id=f"evt_{next(self._ids)}", type=EVENT_OF[charge.status],
                            charge=charge)
        body = json.dumps(event.model_dump(mode="json"), separators=(",", ":")).encode()
        copies = 2 if self.rng.random() < faults.webhook_duplicate_rate else 1
        for _ in range(copies):
            delay = (faults.reorder_ms / 1000
                     if self.rng.random() < faults.webhook_reorder_rate else 0.0)
            task = asyncio.create_task(self._deliver(event.id, body, delay))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, event_id: str, body: bytes, delay: float) -> None:
        assert self._session is not None
        await asyncio.sleep(delay)
        wait = self.retry_seconds
        while True:
            timestamp = int(time.time())
            headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(timestamp),
                       SIGNATURE_HEADER: webhook_signature(self.secret, timestamp, body)}
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self._session.post(self.url, data=body, headers=headers) as answer:
                    if 200 <= answer.status < 300:
                        return
                    logger.info("webhook refused; retrying",
                                extra={"event": event_id, "status": answer.status})
            await asyncio.sleep(wait)
            wait = min(wait * 2, MAX_RETRY_SECONDS)


class Ledger:
    def __init__(self, *, faults: Faults, rng: random.Random, webhooks: WebhookSender) -> None:
        self.faults = faults
        self.rng = rng
        self.webhooks = webhooks
        self.charges: dict[str, ChargeRecord] = {}
        self._ids = itertools.count(1)
        self._outcomes: set[asyncio.Task[None]] = set()

    def _decide(self, card_number: str) -> tuple[ChargeStatus, FailureCode | None]:
        if card_number == ALWAYS_SUCCEEDS:
            return "succeeded", None
        if card_number == ALWAYS_DECLINED:
            return "declined", "card_declined"
        if self.rng.random() < self.faults.decline_rate:
            return "declined", "processor_declined"
        return "succeeded", None

    def charge(self, key: str, request: ChargeRequest) -> Charge:
        """The charge made with this key: made now, or the one made before (none twice)."""
        found = self.charges.get(key)
        if found is not None:
            voided_ahead = found.status == "voided" and not found.reference
            if not voided_ahead and (found.amount, found.reference) != (request.amount,
                                                                        request.reference):
                raise KeyReused()
            return found.view()
        status, code = self._decide(request.card_number)
        now = utcnow()
        record = ChargeRecord(id=f"ch_{next(self._ids)}", key=key, reference=request.reference,
                              amount=request.amount, status=status, failure_code=code,
                              created_at=now, updated_at=now)
        self.charges[key] = record
        if self.rng.random() < self.faults.pending_rate:
            record.outcome, record.outcome_code = status, code
            record.status, record.failure_code = "pending", None
            task = asyncio.create_task(self._settle_later(record, self.faults.pending_ms / 1000))
            self._outcomes.add(task)
            task.add_done_callback(self._outcomes.discard)
        else:
            self.webhooks.send(record.view(), self.faults)
        return record.view()

    async def _settle_later(self, record: ChargeRecord, delay: float) -> None:
        await asyncio.sleep(delay)
        if record.status == "pending":  # not voided meanwhile
            self._move(record, record.outcome, record.outcome_code)

    def _move(self, record: ChargeRecord, status: ChargeStatus,
              code: FailureCode | None = None) -> None:
        record.status, record.failure_code, record.updated_at = status, code, utcnow()
        self.webhooks.send(record.view(), self.faults)

    def get(self, key: str) -> Charge | None:
        found = self.charges.get(key)
        return found.view() if found else None

    def void(self, key: str) -> Charge:
        """Gives a charge back before it settles. A key with no charge yet is voided ahead:
        a charge request with it that is still on its way is answered `voided`."""
        record = self.charges.get(key)
        if record is None:
            now = utcnow()
            record = ChargeRecord(id=f"ch_{next(self._ids)}", key=key, reference="", amount=0,
                                  status="voided", failure_code=None, created_at=now,
                                  updated_at=now)
            self.charges[key] = record
            return record.view()
        if record.status in ("pending", "succeeded"):
            self._move(record, "voided")
        return record.view()

    def refund(self, key: str) -> Charge | None:
        record = self.charges.get(key)
        if record is None:
            return None
        if record.status == "pending":
            raise ChargePending()
        if record.status == "succeeded":
            self._move(record, "refunded")
        return record.view()

    async def close(self) -> None:
        for task in list(self._outcomes):
            task.cancel()
        await asyncio.gather(*self._outcomes, return_exceptions=True)
