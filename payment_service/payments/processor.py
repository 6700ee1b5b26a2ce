"""The card processor, behind a small interface: the seam where a real one (Toss Payments, say)
would plug in. The simulated one follows the contract's test cards:

    4242424242424242  always succeeds
    4000000000000002  always fails with card_declined
    any other valid   fails at PAYMENT_FAILURE_RATE with processor_declined

Only the last four digits ever leave this module's callers' hands.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

ALWAYS_SUCCEEDS = "4242424242424242"
ALWAYS_DECLINED = "4000000000000002"


@dataclass(frozen=True)
class Charge:
    succeeded: bool
    failure_code: str | None = None


class CardProcessor(Protocol):
    async def charge(self, *, card_number: str, amount: int, reference: str) -> Charge: ...

    async def void(self, *, reference: str) -> None:
        """Gives a charge back in full (a refund, or a charge the order could not take)."""


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


class SimulatedProcessor:
    def __init__(self, *, failure_rate: float, rng: random.Random | None = None) -> None:
        self.failure_rate = failure_rate
        # Not a secret: which simulated charge fails needs no cryptographic randomness.
        self.rng = rng or random.Random()  # noqa: S311
        self.voided: list[str] = []

    async def charge(self, *, card_number: str, amount: int, reference: str) -> Charge:
        if card_number == ALWAYS_SUCCEEDS:
            return Charge(True)
        if card_number == ALWAYS_DECLINED:
            return Charge(False, "card_declined")
        if self.rng.random() < self.failure_rate:
            return Charge(False, "processor_declined")
        return Charge(True)

    async def void(self, *, reference: str) -> None:
        self.voided.append(reference)
