"""The caller's identity as the gateway forwards it. Services never parse tokens: they believe the
identity headers (and the client address) only under the gateway's signature
(shared.contracts.identity_signature), checked with the key the app's lifespan hands to requests.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import Scope

from shared.contracts import (
    ARRIVED_AT_HEADER,
    CLIENT_IP_HEADER,
    IDENTITY_CALLER_HEADER,
    IDENTITY_MAX_AGE_SECONDS,
    IDENTITY_SIGNATURE_HEADER,
    REQUEST_ID_HEADER,
    SELLER_ROLE,
    SESSION_ID_HEADER,
    USER_ID_HEADER,
    USER_ROLES_HEADER,
    identity_signature,
    is_session_id,
    parse_arrived_at,
    parse_user_id,
    roles_from_header,
    signature_timestamp,
)
from shared.errors import Forbidden, Unauthorized

# The lifespan state key under which create_service_app hands requests the signing key.
IDENTITY_KEY_STATE = "identity_signing_key"
logger = logging.getLogger("shared.identity")


@dataclass(frozen=True, slots=True)
class GatewayIdentity:
    """What the gateway vouched for: the caller (None on a route without a token) and the client
    address it resolved."""

    user_id: int | None
    session_id: str | None
    client_ip: str
    roles: frozenset[str] = frozenset()
    # Who signed: `gateway`, or the package of the service that called (its own word: every
    # holder of the key can sign any name; it tells routes apart, it is no proof).
    caller: str = ""
    # When the request reached the gateway (microseconds since the epoch), if it said.
    arrived_at_us: int | None = None


def _refuse(reason: str) -> Unauthorized:
    # Nobody but the gateway (or someone misconfigured) sends these headers: worth a line.
    logger.warning("identity headers refused", extra={"reason": reason})
    return Unauthorized("The caller's identity is not signed by the gateway.")


async def gateway_identity(request: Request) -> GatewayIdentity | None:
    """The signed identity, or None when the request carries no signature at all (it did not
    come through the gateway). A signature that does not check out is a 401."""
    key: bytes | None = getattr(request.state, IDENTITY_KEY_STATE, None)
    if key is None:
        raise RuntimeError("no identity signing key: build the app with create_service_app")
    return verify_identity(request.headers, key)


# Looked up in lower case: ASGI's header names are, and Starlette's Headers folds to it anyway.
_SIGNATURE = IDENTITY_SIGNATURE_HEADER.lower()
_USER_ID = USER_ID_HEADER.lower()
_SESSION_ID = SESSION_ID_HEADER.lower()
_CLIENT_IP = CLIENT_IP_HEADER.lower()
_REQUEST_ID = REQUEST_ID_HEADER.lower()
_ROLES = USER_ROLES_HEADER.lower()
_CALLER = IDENTITY_CALLER_HEADER.lower()
_ARRIVED_AT = ARRIVED_AT_HEADER.lower()


def signed_in_user(scope: Scope, headers: Mapping[str, str]) -> int | None:
    """For a layer in front of the router: the user the route's CurrentUser would believe
    (the gateway's signature checked with the app's key), else None (on any doubt the route
    answers, in its own words)."""
    identity = signed_identity(scope, headers)
    return None if identity is None else identity.user_id


def signed_identity(scope: Scope, headers: Mapping[str, str]) -> GatewayIdentity | None:
    """signed_in_user's identity in full, or None (no signature, or one that does not check
    out)."""
    key = scope.get("state", {}).get(IDENTITY_KEY_STATE)
    if not isinstance(key, bytes):
        return None
    try:
        return verify_identity(headers, key)
    except Unauthorized:
        return None


def signed_by_the_deployment(scope: Scope, headers: Mapping[str, str]) -> bool:
    """For a layer in front of an internal route that only refuses (sold out): the request is
    signed with the app's key. Which caller may be answered is the route's own check
    (internal_callers)."""
    key = scope.get("state", {}).get(IDENTITY_KEY_STATE)
    if not isinstance(key, bytes):
        return False
    try:
        return verify_identity(headers, key) is not None
    except Unauthorized:
        return False


def verify_identity(headers: Mapping[str, str], key: bytes) -> GatewayIdentity | None:
    """gateway_identity for whoever holds the headers (names in lower case) outside a route:
    None without a signature, Unauthorized for one that does not check out."""
    signature = headers.get(_SIGNATURE)
    if signature is None:
        return None
    timestamp = signature_timestamp(signature)
    if timestamp is None:
        raise _refuse("malformed signature")
    if abs(time.time() - timestamp) > IDENTITY_MAX_AGE_SECONDS:
        raise _refuse("stale signature")
    raw_user_id = headers.get(_USER_ID, "")
    raw_session_id = headers.get(_SESSION_ID, "")
    client_ip = headers.get(_CLIENT_IP, "")
    raw_roles = headers.get(_ROLES, "")
    caller = headers.get(_CALLER, "")
    raw_arrived_at = headers.get(_ARRIVED_AT, "")
    expected = identity_signature(key, timestamp=timestamp, user_id=raw_user_id,
                                  session_id=raw_session_id,
                                  request_id=headers.get(_REQUEST_ID, ""), client_ip=client_ip,
                                  roles=raw_roles, caller=caller, arrived_at=raw_arrived_at)
    if not hmac.compare_digest(expected, signature):
        raise _refuse("wrong signature")
    return GatewayIdentity(
        user_id=parse_user_id(raw_user_id),
        session_id=raw_session_id if is_session_id(raw_session_id) else None,
        client_ip=client_ip,
        roles=roles_from_header(raw_roles),
        caller=caller,
        arrived_at_us=parse_arrived_at(raw_arrived_at),
    )


SignedIdentity = Annotated[GatewayIdentity | None, Depends(gateway_identity)]


async def current_user_id(identity: SignedIdentity) -> int:
    if identity is None or identity.user_id is None:
        raise Unauthorized("This route needs a signed-in user.")
    return identity.user_id


class NotASeller(Forbidden):
    title = "Only sellers may do this"


async def current_seller_id(identity: SignedIdentity) -> int:
    """A signed-in caller holding the `seller` role (granted by an operator; the gateway forwards
    the token's roles under its signature)."""
    user_id = await current_user_id(identity)
    assert identity is not None
    if SELLER_ROLE not in identity.roles:
        raise NotASeller("Only accounts with the seller role may list products.")
    return user_id


async def current_session_id(identity: SignedIdentity) -> str:
    """The caller's login session; the gateway sets it beside X-User-Id on every signed-in call."""
    if identity is None or identity.session_id is None:
        raise Unauthorized("This route needs the caller's session (X-Session-Id).")
    return identity.session_id


async def client_ip(request: Request, identity: SignedIdentity) -> str:
    """The address the gateway resolved; without its signature, the socket peer (an unsigned
    X-Forwarded-For is anyone's claim and is never believed)."""
    if identity is not None and identity.client_ip:
        return identity.client_ip
    return request.client.host if request.client else "unknown"


def internal_callers(*callers: str) -> Any:
    """The dependency of an internal router (/internal/**), naming the services it answers:
    APIRouter(dependencies=[internal_callers("order_service")]). Only a request signed as a
    service signs an internal call (shared.http) is answered. The gateway never routes them, so
    one without a signature is nobody we trust; one signed for a user or a client address was
    signed by the gateway for a public request (captured and replayed here), never by a
    service, which signs neither; and one from a service the route does not name is refused."""
    allowed = frozenset(callers)

    async def internal_caller(identity: SignedIdentity) -> None:
        if identity is None:
            raise Unauthorized("Internal routes answer only the deployment's own services.")
        if identity.user_id is not None or identity.session_id is not None or identity.client_ip:
            raise _refuse("a gateway's signature on an internal route")
        if identity.caller not in allowed:
            raise _refuse("a caller this internal route does not name")

    return Depends(internal_caller)

CurrentUser = Annotated[int, Depends(current_user_id)]
CurrentSession = Annotated[str, Depends(current_session_id)]
CurrentSeller = Annotated[int, Depends(current_seller_id)]
ClientIp = Annotated[str, Depends(client_ip)]
