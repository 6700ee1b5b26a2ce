"""The card processor as payment_service sees it: an HTTP API (payments/processor_api.py) behind
a small interface, the seam where a real processor (Toss Payments, say) would plug in. In
development and tests the simulator serves it (payment_service/simulator).

A charge request carries the processor's idempotency key, derived from the payment, so a request
whose answer was lost (a timeout, a closed connection) is sent again with the same key: the
processor answers the charge it already made, and never makes a second one.

Only the last four digits of a card ever leave this module's callers' hands.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from payment_service.payments.errors import ProcessorUnavailable
from payment_service.payments.processor_api import (
    CHARGES_PATH,
    IDEMPOTENCY_HEADER,
    INFO_PATH,
    Charge,
    ChargeRequest,
    ProcessorInfo,
    charge_path,
)
from shared.deadline import Deadline
from shared.http import ServiceCallFailed, ServiceClient, ServiceResponse
from shared.sale_metrics import PaymentMetrics

logger = logging.getLogger("payment_service.processor")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def charge_key(payment_id: int, lease_token: str) -> str:
    """The processor's idempotency key of a payment's charge: one charge per payment, and never
    the same key for two payments (ids start again in a new database; leases never repeat)."""
    return f"pay-{payment_id}-{lease_token}"


@dataclass(frozen=True)
class Attempts:
    """How often, and how patiently, a request whose answer is lost is sent again."""

    count: int = 3
    timeout_seconds: float = 2.0
    backoff_seconds: float = 0.2


class CardProcessor(Protocol):
    """`deadline`: every request ends by then (sent again only while time is left)."""

    async def charge(self, *, key: str, card_number: str, amount: int, reference: str,
                     deadline: Deadline | None = None) -> Charge:
        """The charge made with `key` (made now, or before). ProcessorUnavailable when no
        answer came: whether the charge was taken is then unknown."""

    async def charge_state(self, key: str, *, deadline: Deadline | None = None) -> Charge | None:
        """The charge made with `key` as the processor knows it now; None if there is none."""

    async def void(self, key: str, *, deadline: Deadline | None = None) -> Charge:
        """Gives a charge back in full, or makes sure none is taken with this key later."""

    async def refund(self, key: str) -> Charge | None:
        """Gives a settled charge back; None if the processor has no charge with this key."""


class HttpProcessor:
    def __init__(self, client: ServiceClient, *, attempts: Attempts = Attempts(),
                 metrics: PaymentMetrics | None = None) -> None:
        self.client = client
        self.attempts = attempts
        self.metrics = metrics or PaymentMetrics()

    async def info(self) -> ProcessorInfo | None:
        """What the processor says it is; None if it has no such route (a processor that is
        not the simulator need not have one)."""
        response = await self._send("GET", INFO_PATH, key=None, operation="info")
        if response.status == 404:
            return None
        if response.status != 200:
            raise ProcessorUnavailable(f"The card processor answered {response.status}.")
        try:
            return ProcessorInfo.model_validate(response.body)
        except ValidationError as error:
            raise ProcessorUnavailable("The card processor's answer was not understood.") \
                from error

    async def charge(self, *, key: str, card_number: str, amount: int, reference: str,
                     deadline: Deadline | None = None) -> Charge:
        body = ChargeRequest(amount=amount, card_number=card_number, reference=reference)
        response = await self._send("POST", CHARGES_PATH, key=key, operation="charge",
                                    body=body.model_dump(mode="json"), deadline=deadline)
        return self._charge(response)

    async def charge_state(self, key: str, *, deadline: Deadline | None = None) -> Charge | None:
        response = await self._send("GET", charge_path(key), key=None, operation="charge_state",
                                    deadline=deadline)
        return None if response.status == 404 else self._charge(response)

    async def void(self, key: str, *, deadline: Deadline | None = None) -> Charge:
        return self._charge(await self._send("POST", charge_path(key, "void"),
                                             key=f"void-{key}", operation="void",
                                             deadline=deadline))

    async def refund(self, key: str) -> Charge | None:
        response = await self._send("POST", charge_path(key, "refund"), key=f"refund-{key}",
                                    operation="refund")
        return None if response.status == 404 else self._charge(response)

    def _charge(self, response: ServiceResponse) -> Charge:
        if response.status != 200:
            raise ProcessorUnavailable(f"The card processor answered {response.status} "
                                       f"{response.code}.")
        return Charge.model_validate(response.body)

    async def _send(self, method: str, path: str, *, key: str | None, operation: str,
                    body: object = None, deadline: Deadline | None = None) -> ServiceResponse:
        """Every request the processor takes is idempotent by its key: one whose answer is lost
        is sent again, with the same key, a few times, while the deadline leaves time. Each
        attempt is timed."""
        headers = {IDEMPOTENCY_HEADER: key} if key is not None else None
        latency = self.metrics.processor_latency
        timeout = self.attempts.timeout_seconds
        for attempt in range(1, self.attempts.count + 1):
            began = time.monotonic()
            try:
                response = await self.client.request(
                    method, path, json_body=body, headers=headers,
                    timeout=deadline.cap(timeout) if deadline else timeout)
                latency.labels(operation, "answered").observe(time.monotonic() - began)
                return response
            except ServiceCallFailed as failed:
                latency.labels(operation, "unanswered").observe(time.monotonic() - began)
                logger.warning("card processor did not answer",
                               extra={"path": path.split("/")[2], "attempt": attempt,
                                      "reason": failed.reason})
                backoff = self.attempts.backoff_seconds * attempt
                if attempt == self.attempts.count or (
                        deadline is not None and deadline.left() <= backoff):
                    raise ProcessorUnavailable() from failed
                await asyncio.sleep(backoff)
        raise AssertionError("unreachable")
