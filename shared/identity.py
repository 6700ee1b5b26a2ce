"""The caller's identity as the gateway (or a calling service) vouches for it. Services never
parse tokens: they believe the identity headers (and the client address) only under a signature
bound to the request (shared.contracts.identity_message), checked once, when the request
arrives, by IdentityCheck in front of the app with the public keys the lifespan loaded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.contracts import (
    IDENTITY_SIGNATURE_HEADER,
    NOT_READ_HEADER,
    SELLER_ROLE,
    is_session_id,
    parse_arrived_at,
    parse_user_id,
    request_target,
    roles_from_header,
)
from shared.errors import (
    Forbidden,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    problem_from_error,
)
from shared.identity_keys import (
    SIGNED_HEADER_NAMES,
    IdentityAged,
    IdentityRefused,
    IdentityVerifier,
)

# The lifespan state key under which create_service_app hands requests the verifier.
IDENTITY_VERIFIER_STATE = "identity_verifier"
# Where IdentityCheck leaves the outcome for the request (scope["state"]): a GatewayIdentity,
# or None for a request that carries no signature.
IDENTITY_STATE = "identity"
# A signed body is read whole before the app sees it (its digest is signed). The gateway sends
# at most 1 MiB; an internal call far less.
MAX_SIGNED_BODY_BYTES = 2 * 1024 * 1024
logger = logging.getLogger("shared.identity")


@dataclass(frozen=True, slots=True)
class GatewayIdentity:
    """What the signer vouched for: the caller (None on a route without a token) and the client
    address the gateway resolved."""

    user_id: int | None
    session_id: str | None
    client_ip: str
    roles: frozenset[str] = frozenset()
    # Who signed: `gateway`, or the package of the service that called, proven by its key.
    caller: str = ""
    # When the request reached the gateway (microseconds since the epoch), if it said.
    arrived_at_us: int | None = None


def _refuse(reason: str) -> Unauthorized:
    # Nobody but the gateway (or someone misconfigured) sends these headers: worth a line.
    logger.warning("identity headers refused", extra={"reason": reason})
    return Unauthorized("The caller's identity is not signed by the gateway.")


_SIGNATURE = IDENTITY_SIGNATURE_HEADER.lower().encode()


class IdentityCheck:
    """ASGI layer in front of a service's app: a request carrying X-Identity-Signature is read
    whole and checked, here, at once, against the request as received (method, path and query,
    body, this service as its audience, nonce, age). The age is counted to its arrival: a request
    that then waits its turn inside a busy service is still the honest request it was. A
    signature that does not check out is a 401 before any of the app runs; a genuine one that
    aged before it was read (a socket backlog under overload) is a retryable 503."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received_at = time.time()
        state = scope.setdefault("state", {})
        # One pass over the raw headers, keeping only what is signed (the last of a repeated
        # one, as a dict of them all would) and the first signature.
        signature: str | None = None
        signed_headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in SIGNED_HEADER_NAMES:
                signed_headers[name] = value
            elif name == _SIGNATURE and signature is None:
                signature = value.decode("latin-1")
        if signature is None:
            state[IDENTITY_STATE] = None
            await self.app(scope, receive, send)
            return
        verifier = state.get(IDENTITY_VERIFIER_STATE)
        if not isinstance(verifier, IdentityVerifier):
            raise RuntimeError("no identity verifier: build the app with create_service_app")
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left; nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_SIGNED_BODY_BYTES:
                await problem_from_error(PayloadTooLarge(
                    "The body is larger than a signed request may be."))(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in signed_headers.items()}
        try:
            signed = verifier.verify(
                signature, headers, method=scope["method"],
                target=request_target(scope.get("raw_path") or scope["path"].encode(),
                                      scope.get("query_string", b"")),
                body=body, now=received_at)
        except IdentityRefused as refused:
            await problem_from_error(_refuse(str(refused)))(scope, receive, send)
            return
        except IdentityAged as aged:
            # The system was too slow, not the caller wrong: the contract's retryable answer for
            # a slow service, never a 401 that would send a signed-in client to sign in again.
            logger.warning("request aged before it was read", extra={"reason": str(aged)})
            await problem_from_error(ServiceUnavailable(
                "The request waited too long inside the service; retry shortly.",
                headers={"Retry-After": "1", NOT_READ_HEADER: "aged"}))(scope, receive, send)
            return
        state[IDENTITY_STATE] = GatewayIdentity(
            user_id=parse_user_id(signed.user_id),
            session_id=signed.session_id if is_session_id(signed.session_id) else None,
            client_ip=signed.client_ip,
            roles=roles_from_header(signed.roles),
            caller=signed.caller,
            arrived_at_us=parse_arrived_at(signed.arrived_at),
        )
        await self.app(scope, _replaying(body, receive), send)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """The body read for the check, handed to the app as one message; then the client's own
    receive (a disconnect)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay


def identity_in_scope(scope: Scope) -> GatewayIdentity | None:
    """What IdentityCheck found for this request: None without a signature."""
    state = scope.get("state", {})
    if IDENTITY_STATE not in state:
        raise RuntimeError("no identity check: build the app with create_service_app")
    identity = state[IDENTITY_STATE]
    assert identity is None or isinstance(identity, GatewayIdentity)
    return identity


async def gateway_identity(request: Request) -> GatewayIdentity | None:
    """The signed identity, or None when the request carries no signature at all (it did not
    come through the gateway). One whose signature did not check out never got this far."""
    return identity_in_scope(request.scope)


def signed_in_user(scope: Scope) -> int | None:
    """For a layer in front of the router: the user the route's CurrentUser would believe."""
    identity = identity_in_scope(scope)
    return None if identity is None else identity.user_id


def signed_identity(scope: Scope) -> GatewayIdentity | None:
    """For a layer in front of the router: the identity in full (None without a signature)."""
    return identity_in_scope(scope)


def signed_by_the_deployment(scope: Scope) -> bool:
    """For a layer in front of an internal route that only refuses (sold out): the request is
    signed by a key of the deployment. Which caller may be answered is the route's own check
    (internal_callers)."""
    return identity_in_scope(scope) is not None


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
    APIRouter(dependencies=[internal_callers("order_service")]). Only a request a named service
    signed with its own key (shared.http) is answered. The gateway never routes them, so one
    without a signature is nobody we trust; the gateway's key signs as `gateway`, never as a
    service, and no service holds another's key."""
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
