"""A stand-in replica for the service client's tests: answers every request with its name
(REPLICA_NAME), the Host it was asked for and whether the request was marked as sent again.
`?sleep=` keeps a request in flight, so a replica can be killed under it."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send


def create_app() -> ASGIApp:
    name = os.environ.get("REPLICA_NAME", "replica")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = dict(part.partition("=")[::2] for part in scope["query_string"].decode().split("&")
                     if part)
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        if query.get("sleep"):
            await asyncio.sleep(float(query["sleep"]))
        answer: dict[str, Any] = {"replica": name, "host": headers.get("host"),
                                  "resent": "x-resent" in headers, "method": scope["method"]}
        body = json.dumps(answer).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app
