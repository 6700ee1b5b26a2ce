"""A second listening socket of a service, for the calls of the other services.

At a sale's opening the gateway opens thousands of connections to order_service at once (the
crowd's orders, then a stream per ticket). A process takes new connections from its listening
socket's accept queue in the order they came, as fast as its event loop gets round to them:
measured under `make load`, 300 to 740 connections waited there for up to 10 s, and
payment_service's call for an order's payment lease, made on a new connection behind them,
waited 8 to 10 s before order_service read it (the payment's own budget is 8 s). A socket of its
own gives those calls an accept queue of their own: taken in the next turn of the loop, then
served beside the crowd's requests instead of behind its connections.

It serves the same app with the same lifespan state (the Resources the lifespan built); what the
other services may call is still decided by each route (shared.identity.internal_callers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.server import ServerState

logger = logging.getLogger("shared.internal_listener")

# Connections still open when the app stops are asked to close after their answer, then
# dropped after this long.
CLOSE_TIMEOUT_SECONDS = 3.0


@contextlib.asynccontextmanager
async def internal_listener(app: ASGIApp, state: Mapping[str, Any], *, host: str,
                            port: int | None) -> AsyncIterator[int | None]:
    """Serves `app` on host:port too while the block runs (nothing when `port` is None),
    handing every request `state` as the lifespan does; yields the port listened on (0 asks
    the system for a free one)."""
    if port is None:
        yield None
        return
    config = uvicorn.Config(app, host=host, port=port, lifespan="off", proxy_headers=False,
                            server_header=False, access_log=False, log_config=None)
    config.load()
    server_state = ServerState()
    app_state = dict(state)

    def protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
        return config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=server_state, app_state=app_state, _loop=_loop)

    server = await asyncio.get_running_loop().create_server(
        protocol, host=host, port=port, backlog=config.backlog)
    assert server.sockets
    listening = int(server.sockets[0].getsockname()[1])
    logger.info("listening for internal calls", extra={"host": host, "port": listening})
    try:
        yield listening
    finally:
        server.close()
        for connection in list(server_state.connections):
            connection.shutdown()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                while server_state.connections:  # noqa: ASYNC110 (as uvicorn's shutdown waits)
                    await asyncio.sleep(0.05)
        for connection in list(server_state.connections):
            connection.transport.close()
        for task in list(server_state.tasks):
            task.cancel()
        await server.wait_closed()
