"""The card processor simulator as an app: `uvicorn --factory payment_service.simulator.app:create_app`.

The processor's API (payment_service.payments.processor_api) under /v1, and two operator routes
for fault schedules and checkers:

    GET /_sim/charges  -> {"items": [charge, ...]}  the processor's own ledger
    PUT /_sim/faults   any subset of the fault settings -> the settings now in force

Answers to charge requests are delayed, held past the caller's timeout, or lost (the connection
closed after the charge was taken) at the configured rates.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from payment_service.payments.processor_api import (
    CHARGES_PATH,
    IDEMPOTENCY_HEADER,
    INFO_PATH,
    Charge,
    ChargeRequest,
    ProcessorInfo,
)
from payment_service.simulator.ledger import ChargePending, KeyReused, Ledger, WebhookSender
from payment_service.simulator.settings import (
    Faults,
    FaultsUpdate,
    SimulatorSettings,
    get_settings,
)
from shared.app import NO_TELEMETRY
from shared.logging import configure_logging
from shared.tracing import start_tracing

logger = logging.getLogger("payment_service.simulator")
LOST = "processor_sim.lost"


class AnswerLost(Exception):
    """The charge is taken; its answer never reaches the caller."""


class LoseAnswers:
    """Turns AnswerLost into a connection closed after the status line: the caller reads no
    answer and cannot tell whether the charge was taken."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except AnswerLost:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"1000")]})


class Simulator:
    def __init__(self, ledger: Ledger, rng: random.Random) -> None:
        self.ledger = ledger
        self.rng = rng

    @property
    def faults(self) -> Faults:
        return self.ledger.faults

    async def latency(self) -> None:
        base = self.faults.latency_ms / 1000
        if base:
            await asyncio.sleep(base + self.rng.random() * base)

    async def answer_faults(self) -> None:
        """After the work is done: the answer is slow, or lost."""
        if self.rng.random() < self.faults.timeout_rate:
            await asyncio.sleep(self.faults.timeout_ms / 1000)
        if self.rng.random() < self.faults.lost_answer_rate:
            raise AnswerLost()


def problem(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": detail, "status": status,
                         "detail": detail, "code": code}, status_code=status,
                        media_type="application/problem+json")


async def get_simulator(request: Request) -> Simulator:
    simulator: Simulator = request.state.simulator
    return simulator


SimulatorDep = Annotated[Simulator, Depends(get_simulator)]
KeyHeader = Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER)]

router = APIRouter()


@router.get("/healthz")
@router.get("/readyz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(INFO_PATH)
async def info() -> ProcessorInfo:
    return ProcessorInfo(name="payment_service.simulator", simulated=True)


@router.post(CHARGES_PATH, response_model=None)
async def create_charge(body: ChargeRequest, simulator: SimulatorDep,
                        key: KeyHeader = None) -> Charge | JSONResponse:
    if not key or len(key) > 255:
        return problem(422, "idempotency_key_required", "Idempotency-Key is required.")
    await simulator.latency()
    try:
        charge = simulator.ledger.charge(key, body)
    except KeyReused:
        return problem(422, "idempotency_key_reused",
                       "This Idempotency-Key was used with another charge.")
    await simulator.answer_faults()
    return charge


@router.get(CHARGES_PATH + "/{key}", response_model=None)
async def get_charge(key: str, simulator: SimulatorDep) -> Charge | JSONResponse:
    await simulator.latency()
    charge = simulator.ledger.get(key)
    return charge if charge is not None else problem(404, "not_found", "No such charge.")


@router.post(CHARGES_PATH + "/{key}/void")
async def void_charge(key: str, simulator: SimulatorDep) -> Charge:
    await simulator.latency()
    return simulator.ledger.void(key)


@router.post(CHARGES_PATH + "/{key}/refund", response_model=None)
async def refund_charge(key: str, simulator: SimulatorDep) -> Charge | JSONResponse:
    await simulator.latency()
    try:
        charge = simulator.ledger.refund(key)
    except ChargePending:
        return problem(409, "charge_pending", "The charge is still pending.")
    return charge if charge is not None else problem(404, "not_found", "No such charge.")


@router.get("/_sim/charges")
async def ledger_charges(simulator: SimulatorDep) -> dict[str, Any]:
    return {"items": [record.view().model_dump(mode="json")
                      for record in simulator.ledger.charges.values()]}


@router.put("/_sim/faults")
async def set_faults(update: FaultsUpdate, simulator: SimulatorDep) -> Faults:
    changes = update.model_dump(exclude_none=True)
    simulator.ledger.faults = simulator.faults.model_copy(update=changes)
    logger.info("faults changed", extra={"faults": changes})
    return simulator.ledger.faults


def create_app(settings: SimulatorSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("processor_sim", settings.log_level)
    tracing = start_tracing("processor_sim")
    # Not a secret: which simulated charge fails needs no cryptographic randomness.
    rng = random.Random(settings.seed)  # noqa: S311

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, object]]:
        async with WebhookSender(url=settings.webhook_url,
                                 secret=settings.webhook_secret.get_secret_value().encode(),
                                 retry_seconds=settings.webhook_retry_seconds,
                                 rng=rng) as webhooks:
            ledger = Ledger(faults=settings.faults(), rng=rng, webhooks=webhooks)
            try:
                yield {"simulator": Simulator(ledger, rng)}
            finally:
                await ledger.close()

    app = FastAPI(title="Card processor simulator", lifespan=lifespan,
                  telemetry=NO_TELEMETRY if tracing is None else tracing.fastapi_telemetry())
    app.include_router(router)
    app.add_middleware(LoseAnswers)
    return app
