"""Minimal forwarding apps for comparing HTTP client libraries on the gateway's hot path.

Each forwards every request to BENCH_UPSTREAM_URL and returns the answer; nothing else differs.
Started by loadtests/bench_forwarding.py as `uvicorn --factory loadtests.forwarders:<name>`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PAYLOAD = {"id": 1, "email": "bench@example.com", "name": "Bench", "greeting": None}


def upstream() -> Starlette:
    async def answer(_: Request) -> JSONResponse:
        return JSONResponse(PAYLOAD)

    return Starlette(routes=[Route("/healthz", answer), Route("/item", answer)])


def _upstream_url() -> str:
    return os.environ["BENCH_UPSTREAM_URL"]


def httpx_forwarder() -> Starlette:
    clients: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
        async with httpx.AsyncClient(base_url=_upstream_url(), limits=limits) as client:
            clients["upstream"] = client
            yield

    async def forward(request: Request) -> Response:
        answer = await clients["upstream"].get(request.url.path)
        return Response(answer.content, status_code=answer.status_code,
                        media_type=answer.headers.get("content-type"))

    return Starlette(routes=[Route("/healthz", forward), Route("/item", forward)], lifespan=lifespan)


def aiohttp_forwarder() -> Starlette:
    sessions: dict[str, aiohttp.ClientSession] = {}

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as session:
            sessions["upstream"] = session
            yield

    async def forward(request: Request) -> Response:
        async with sessions["upstream"].get(_upstream_url() + request.url.path) as answer:
            body = await answer.read()
            return Response(body, status_code=answer.status,
                            media_type=answer.headers.get("content-type"))

    return Starlette(routes=[Route("/healthz", forward), Route("/item", forward)], lifespan=lifespan)
