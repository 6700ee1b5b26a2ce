"""What order_service's lifespan builds once (datastores, admission, and the three parts of
orders: creation, transitions, effects) and the dependencies that hand it to requests.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in a worker thread, a
thread hop per dependency per request for what is only attribute access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from order_service.orders.admission import (
    OrderAdmission,
    order_id_noted_in_front,
    slot_taken_in_front,
)
from order_service.orders.creation import OrderCreation
from order_service.orders.drain import LineDrain
from order_service.orders.effects import OrderEffects
from order_service.orders.ids import NotedId
from order_service.orders.tickets import TicketReads
from order_service.orders.transitions import OrderTransitions
from order_service.settings import Settings
from shared.dependencies import AppResources, resources_of
from shared.lifespan import Datastores
from shared.sold_out import Slot


@dataclass(frozen=True, kw_only=True)
class Resources:
    settings: Settings
    datastores: Datastores
    # Stateless between requests but for their caches: built once, nothing per request.
    admission: OrderAdmission
    creation: OrderCreation
    transitions: OrderTransitions
    effects: OrderEffects
    drain: LineDrain
    tickets: TicketReads


async def get_resources(resources: AppResources) -> Resources:
    return resources_of(resources, Resources)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_order_creation(resources: AppResources) -> OrderCreation:
    return resources_of(resources, Resources).creation


async def get_order_transitions(resources: AppResources) -> OrderTransitions:
    return resources_of(resources, Resources).transitions


async def get_ticket_reads(resources: AppResources) -> TicketReads:
    return resources_of(resources, Resources).tickets


OrderCreationDep = Annotated[OrderCreation, Depends(get_order_creation)]
OrderTransitionsDep = Annotated[OrderTransitions, Depends(get_order_transitions)]
TicketReadsDep = Annotated[TicketReads, Depends(get_ticket_reads)]
# The reserve slot admission's layer in front of the router waited for, if it did.
SlotTakenInFront = Annotated[Slot | None, Depends(slot_taken_in_front)]
OrderIdNotedInFront = Annotated[NotedId | None, Depends(order_id_noted_in_front)]
