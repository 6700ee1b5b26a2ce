"""Service-to-service calls: one pooled aiohttp session per called service, opened in the lifespan.

aiohttp rather than httpx: httpx's connection pool collapses under concurrency (README, "Library
choices"). Every call has a timeout, carries the request's X-Request-Id, and turns a service that
is down, slow or answering garbage into one exception, `ServiceCallFailed`, that callers map to
their own answer (most often 503 `upstream_unavailable`). A call answers with the status and the
decoded JSON body; what a status means is the typed client's business (`<service>/clients.py`).
Internal routes are idempotent by design, so a call that met a closed keep-alive connection is
sent once more, marked as sent again (RESENT_HEADER) so the receiver answers it from what the
first did.

A service's name may stand for several replicas (shared/replicas.py): each call goes to the next
address in turn, and a call whose connection could not be made (refused, or no answer to the
connect: nothing was sent) moves to the next address, as often as there are addresses. That is
the only failover. A call that was sent and lost its connection is sent once more, marked, as
above, and never again: it may have been carried out, and only the marked resend is answered
from what the first did. A call refused unread (503 with NOT_READ_HEADER: its signature aged in
the receiver's queue, so nothing ran) is sent once more too, whatever its method, signed anew
and not marked, as the gateway does.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from shared.contracts import IDENTITY_CALLER_HEADER, IDENTITY_SIGNATURE_HEADER, NOT_READ_HEADER
from shared.identity_keys import IdentitySigner
from shared.in_order import InOrderConnector
from shared.replicas import CONNECT_TIMEOUT_SECONDS, Hosts, Replicas, Resolver, url_host
from shared.request_context import REQUEST_ID_HEADER, current_request_id, new_request_id
from shared.signed_on_send import SignatureHeaders, SignedOnSend, signed_request
from shared.tracing import client_trace_configs

# Below uvicorn's keep-alive timeout (5 s): an idle pooled connection is let go here first, never
# closed by the other side under a request that could not safely be retried.
KEEPALIVE_SECONDS = 4.0
# Past this a body is not an answer of ours but a service gone wrong.
MAX_RESPONSE_BYTES = 1024 * 1024
# Carried by a request sent once more after the connection closed under the first: that one may
# have been carried out, so the receiver answers from what it did, never from a memory of other
# requests (stock_service's sold-out memory would refuse a reserve whose units it holds).
RESENT_HEADER = "X-Resent"


class ServiceCallFailed(Exception):
    """The other service could not be reached, did not answer in time, or answered garbage."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason


@dataclass(frozen=True)
class ServiceResponse:
    status: int
    body: Any

    @property
    def code(self) -> str | None:
        """The problem code of an error answer, if it is a problem document."""
        return self.body.get("code") if isinstance(self.body, dict) else None


class ServiceClient:
    def __init__(self, name: str, base_url: str, session: aiohttp.ClientSession, *,
                 signer: IdentitySigner | None, resolver: Resolver) -> None:
        # `name`: the called service's package, the audience its calls are signed for.
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._signer = signer
        url = URL(self.base_url)
        # Over TLS the name must stay in the URL (the certificate is checked against it): aiohttp
        # resolves it and tries each address on a failed connect, without the per-call turn.
        self.replicas = (Replicas(url.raw_host or "", url.port or 80, resolver)
                         if url.scheme == "http" else None)
        self._port = url.port
        self._path = url.raw_path.rstrip("/")
        self._host_header = url.raw_authority

    def _url(self, address: str | None) -> str:
        """The base URL, at one replica's address (None: at the name, for aiohttp to resolve)."""
        if address is None:
            return self.base_url
        return f"http://{url_host(address)}:{self._port}{self._path}"

    @property
    def timeout_seconds(self) -> float | None:
        """A call's timeout when the caller gives none (the session's)."""
        return self._session.timeout.total

    def _headers(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        """The request id, to follow the call through both logs."""
        return {REQUEST_ID_HEADER: current_request_id() or new_request_id(), **(headers or {})}

    def _signature(self, method: str, url: URL, body: bytes | None,
                   request_id: str) -> SignatureHeaders:
        """Signed with the caller's own key, with no user, for this one request (method, path
        and query as sent, body, the called service): internal routes answer only the callers
        they name. Signed once each attempt has its connection (shared/signed_on_send.py): a
        resend carries a fresh nonce, and no wait for a connection ages it. Without a signer (a
        client of something outside the system, such as the card processor) nothing is signed:
        a signature must never leave the system."""
        signer = self._signer
        if signer is None:
            return lambda: ()

        def signature() -> list[tuple[str, str]]:
            return [(IDENTITY_SIGNATURE_HEADER, signer.sign(
                        audience=self.name, method=method, target=url.raw_path_qs,
                        body=body or b"", request_id=request_id)),
                    (IDENTITY_CALLER_HEADER, signer.caller)]

        return signature

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      headers: Mapping[str, str] | None = None,
                      timeout: float | None = None) -> ServiceResponse:
        sent = self._headers(headers)
        url = URL(self.base_url + path)
        data = None
        if json_body is not None:
            data = json.dumps(json_body, separators=(",", ":")).encode()
            sent["Content-Type"] = "application/json"
        if self.replicas is not None:
            sent["Host"] = self._host_header
        # One budget for the whole call, whichever replicas it tries.
        budget = timeout if timeout is not None else self.timeout_seconds
        deadline = None if budget is None else time.monotonic() + budget
        untried: list[str | None] = [None]
        if self.replicas is not None:
            try:
                untried = list(await self.replicas.turn())
            except OSError as error:
                raise ServiceCallFailed(self.name, f"name lookup failed: {error}") from error
        address = untried.pop(0)
        resent = False
        sent_unread = False
        # For the path and query as sent, whichever replica's address it goes to.
        signature = self._signature(method, url, data, sent[REQUEST_ID_HEADER])
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise ServiceCallFailed(self.name, "TimeoutError: no answer in time")
            # Another address left: do not wait the whole budget on one that does not answer.
            connect = min(CONNECT_TIMEOUT_SECONDS, remaining or CONNECT_TIMEOUT_SECONDS) \
                if untried else None
            try:
                async with signed_request(
                        self._session, method, self._url(address) + path, sign=signature,
                        data=data, headers=sent, allow_redirects=False,
                        timeout=aiohttp.ClientTimeout(total=remaining,
                                                      sock_connect=connect)) as response:
                    if response.status == 503 and NOT_READ_HEADER in response.headers \
                            and not sent_unread:
                        # Refused unread (its signature aged in the receiver's queue): nothing
                        # ran, so it goes once more, signed anew, to the next replica or this.
                        sent_unread = True
                        untried.append(address)
                        address = untried.pop(0)
                        continue
                    raw = await response.content.read(MAX_RESPONSE_BYTES + 1)
                    status = response.status
                break
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
                # No connection, so nothing was sent: any replica may take the call, whatever
                # it is.
                if self.replicas is not None and address is not None:
                    self.replicas.failed(address)
                if not untried:
                    raise ServiceCallFailed(self.name, f"{type(error).__name__}: {error}") \
                        from error
                address = untried.pop(0)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as error:
                # A pooled keep-alive connection the other side had just closed or reset, or a
                # replica that died under the call. Every internal route is idempotent (by order
                # id, hold id, or as a PUT), so once more is safe, marked. To another replica if
                # there is one: the shared datastores let any of them answer it from what the
                # first did, and the one that lost the connection may be dying with its pool.
                if resent:
                    raise ServiceCallFailed(self.name, f"{type(error).__name__}: {error}") \
                        from error
                resent = True
                sent[RESENT_HEADER] = "1"
                untried.append(address)
                address = untried.pop(0)
            except (aiohttp.ClientError, TimeoutError) as error:
                raise ServiceCallFailed(self.name, f"{type(error).__name__}: {error}") from error
        if len(raw) > MAX_RESPONSE_BYTES:
            raise ServiceCallFailed(self.name, "oversized answer")
        if status >= 500:
            raise ServiceCallFailed(self.name, f"answered {status}")
        try:
            body = json.loads(raw) if raw else None
        except ValueError as error:
            raise ServiceCallFailed(self.name, f"answered {status} with a body that is not JSON") \
                from error
        return ServiceResponse(status, body)


@asynccontextmanager
async def service_client(name: str, base_url: str, *, signer: IdentitySigner | None,
                         timeout_seconds: float, max_connections: int = 100,
                         hosts: Hosts | None = None) -> AsyncIterator[ServiceClient]:
    """A client of one service for the lifespan of an app (or a test); `hosts`: the addresses
    names stand for before DNS is asked (SERVICE_HOSTS, shared/replicas.py)."""
    resolver = Resolver(hosts)
    # Keep-alive connections are pooled per address (the URL names the address), with no limit
    # per address: one replica may take them all when the others are gone. Handed out in the
    # order asked (shared/in_order.py): the drain's reserves reach stock_service in the line's
    # order.
    connector = InOrderConnector(limit=max_connections, keepalive_timeout=KEEPALIVE_SECONDS,
                                 resolver=resolver)
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    # No cookie jar: calls are made on behalf of many users; nothing one answer sets may ride
    # along with the next.
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     request_class=SignedOnSend,
                                     cookie_jar=aiohttp.DummyCookieJar(),
                                     skip_auto_headers=("User-Agent",),
                                     trace_configs=client_trace_configs()) as session:
        # aiohttp sends an idempotent method (PUT, GET) once more by itself when the connection
        # closed under it, unmarked; the one resend is ours, marked RESENT_HEADER. (aiohttp's
        # own test client switches it off the same way.)
        session._retry_connection = False
        yield ServiceClient(name, base_url, session, signer=signer, resolver=resolver)
