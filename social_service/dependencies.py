"""What social_service's lifespan builds once, and the dependencies that hand it to requests.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in a worker thread, a
thread hop per dependency per request for what is only attribute access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from shared.dependencies import AppResources
from shared.lifespan import Datastores
from social_service.settings import Settings


@dataclass(frozen=True, kw_only=True)
class Resources:
    settings: Settings
    datastores: Datastores


async def get_resources(resources: AppResources) -> Resources:
    assert isinstance(resources, Resources), "the lifespan hands out this service's Resources"
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]
