"""The card processor's HTTP API as payment_service speaks it (the simulator in
payment_service/simulator serves the same, so a real processor's adapter is the only thing that
changes):

    POST /v1/charges                 Idempotency-Key: <charge key>   ChargeRequest -> Charge
    GET  /v1/charges/{key}                                           -> Charge (404 unknown)
    POST /v1/charges/{key}/void      Idempotency-Key: void-<key>     -> Charge
    POST /v1/charges/{key}/refund    Idempotency-Key: refund-<key>   -> Charge (409 not refundable)
    GET  /v1/processor                                               -> ProcessorInfo

A charge is addressed by the merchant's idempotency key, which payment_service knows even when
the answer to its charge request was lost. A repeated request with the same key answers the
charge's current state and charges nothing again. `pending` means the outcome arrives later, by a
webhook POSTed to payment_service: the event body is signed with HMAC-SHA256 over
"<timestamp>.<body>" (headers below); it is retried until answered 2xx, and may arrive twice or
out of order. Voiding a key no charge was made with yet leaves a voided charge behind, so a
charge request still on its way is refused rather than taken.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

from pydantic import Field

from shared.schemas import ApiModel, RequestModel, UtcDatetime
from shared.settings import DEVELOPMENT_PLACEHOLDER

CHARGES_PATH = "/v1/charges"
INFO_PATH = "/v1/processor"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TIMESTAMP_HEADER = "X-Processor-Timestamp"
SIGNATURE_HEADER = "X-Processor-Signature"

# The webhook secret of development and tests, on both sides; production refuses it on both.
DEVELOPMENT_WEBHOOK_SECRET = DEVELOPMENT_PLACEHOLDER + "processor-webhook-secret-0123456789"

ChargeStatus = Literal["pending", "succeeded", "declined", "voided", "refunded"]
FailureCode = Literal["card_declined", "processor_declined"]
EventType = Literal["charge.succeeded", "charge.declined", "charge.voided", "charge.refunded"]


def charge_path(key: str, action: str = "") -> str:
    return f"{CHARGES_PATH}/{key}" + (f"/{action}" if action else "")


class ChargeRequest(RequestModel):
    amount: int = Field(ge=0)
    card_number: str = Field(pattern=r"^[0-9]{16}$")
    # What the merchant identifies the charge by: "payment:<payment id>:order:<order id>".
    reference: str = Field(max_length=200)


class Charge(ApiModel):
    id: str
    idempotency_key: str
    reference: str
    amount: int
    status: ChargeStatus
    failure_code: FailureCode | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ChargeEvent(ApiModel):
    id: str
    type: EventType
    charge: Charge


class ProcessorInfo(ApiModel):
    name: str
    simulated: bool


def reference(payment_id: int, order_id: int) -> str:
    return f"payment:{payment_id}:order:{order_id}"


def payment_of(reference_: str) -> int | None:
    """The payment id a reference names, or None if it is not one of ours."""
    parts = reference_.split(":")
    if len(parts) != 4 or parts[0] != "payment" or not parts[1].isdigit():
        return None
    return int(parts[1])


def webhook_signature(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def webhook_signature_valid(secret: bytes, *, timestamp: str | None, signature: str | None,
                            body: bytes, now: float, tolerance_seconds: float) -> bool:
    """Signed with the secret, and recent: an event captured once cannot be replayed later."""
    if timestamp is None or signature is None or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > tolerance_seconds:
        return False
    return hmac.compare_digest(webhook_signature(secret, int(timestamp), body), signature)
