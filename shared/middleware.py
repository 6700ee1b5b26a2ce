"""The one ASGI layer every app puts outermost: the request id (kept from the client if sane,
set for every log line, echoed in the answer), the request's metrics and its access line.

One layer rather than one per concern: each layer wraps `send` once more, and on a read that
costs a third of a millisecond each wrapper counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import unexpected_error_response
from shared.metrics import CLIENT_CLOSED_REQUEST, RequestMetrics, route_template
from shared.request_context import request_id_var, sanitize_request_id
from shared.tracing import Tracing

access_logger = logging.getLogger("access")
error_logger = logging.getLogger("shared.errors")
_REQUEST_ID = b"x-request-id"


class RequestFrameMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: RequestMetrics | None = None,
                 route_of: Callable[[Scope], str] = route_template,
                 tracing: Tracing | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.route_of = route_of
        # Set only while tracing is on: then the server span (outside this layer) gets the id.
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = None
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                incoming = value.decode("latin-1")
                break
        request_id = sanitize_request_id(incoming)
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        if self.tracing is not None:
            self.tracing.note_request(request_id)
        encoded = request_id.encode()
        status: int | None = None
        client_gone = False

        async def receive_watching() -> Message:
            nonlocal client_gone
            message = await receive()
            client_gone = client_gone or message["type"] == "http.disconnect"
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k != _REQUEST_ID]
                headers.append((_REQUEST_ID, encoded))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive_watching, send_with_id)
        except Exception:
            if status is not None:
                raise  # the answer is under way: only cutting the connection can say it failed
            # Answered here, not re-raised: Starlette's outermost layer would answer too, then
            # hand the error to uvicorn, which closes the connection, and the gateway's next
            # request on that pooled connection (another client's) would fail as a 502.
            error_logger.exception("unhandled error")
            await unexpected_error_response()(scope, receive_watching, send_with_id)
        finally:
            if status is None:
                # Nothing was answered: the client left first, or the app failed.
                status = CLIENT_CLOSED_REQUEST if client_gone else 500
            elapsed = time.perf_counter() - started
            route = self.route_of(scope)
            if self.metrics is not None:
                self.metrics.observe(scope["method"], route, status, elapsed)
            if access_logger.isEnabledFor(logging.INFO):
                access_logger.info("%s %s %d", scope["method"], scope["path"], status, extra={
                    "route": route, "status": status, "duration_ms": round(elapsed * 1000, 2)})
            request_id_var.reset(token)
