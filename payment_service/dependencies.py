"""What payment_service's lifespan builds once (datastores, the order_service client, the card
processor, the Idempotency-Key store and the payments service itself) and the dependencies
that hand it to requests.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in a worker thread, a
thread hop per dependency per request for what is only attribute access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from payment_service.payments.service import PaymentsService
from payment_service.settings import Settings
from shared.dependencies import AppResources, resources_of
from shared.lifespan import Datastores


@dataclass(frozen=True, kw_only=True)
class Resources:
    settings: Settings
    datastores: Datastores
    payments: PaymentsService


async def get_resources(resources: AppResources) -> Resources:
    return resources_of(resources, Resources)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_payments_service(resources: AppResources) -> PaymentsService:
    return resources_of(resources, Resources).payments


PaymentsServiceDep = Annotated[PaymentsService, Depends(get_payments_service)]
