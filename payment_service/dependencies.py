"""What payment_service's lifespan builds once (datastores, and the parts of payments: charging,
outcomes, refunds, recovery, over the order_service and card processor clients) and the
dependencies that hand it to requests.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in a worker thread, a
thread hop per dependency per request for what is only attribute access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from payment_service.payments.charging import PaymentCharging
from payment_service.payments.outcomes import PaymentOutcomes
from payment_service.payments.recovery import PaymentRecovery
from payment_service.payments.refunds import PaymentRefunds
from payment_service.settings import Settings
from shared.dependencies import AppResources, resources_of
from shared.lifespan import Datastores


@dataclass(frozen=True, kw_only=True)
class Resources:
    settings: Settings
    datastores: Datastores
    charging: PaymentCharging
    outcomes: PaymentOutcomes
    refunds: PaymentRefunds
    recovery: PaymentRecovery


async def get_resources(resources: AppResources) -> Resources:
    return resources_of(resources, Resources)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_payment_charging(resources: AppResources) -> PaymentCharging:
    return resources_of(resources, Resources).charging


async def get_payment_outcomes(resources: AppResources) -> PaymentOutcomes:
    return resources_of(resources, Resources).outcomes


async def get_payment_refunds(resources: AppResources) -> PaymentRefunds:
    return resources_of(resources, Resources).refunds


PaymentChargingDep = Annotated[PaymentCharging, Depends(get_payment_charging)]
PaymentOutcomesDep = Annotated[PaymentOutcomes, Depends(get_payment_outcomes)]
PaymentRefundsDep = Annotated[PaymentRefunds, Depends(get_payment_refunds)]
