"""Gateway test rig: echo upstreams and the gateway itself, each a real HTTP server on loopback;
and, for the end-to-end modules, the whole system (one per module)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.app import create_app
from gateway.settings import Settings
from gateway.tests.e2e import System, client_at, new_client_address, running_system
from shared.contracts import REVOCATION_EPOCH_KEY
from shared.services import SERVICES
from shared.testing.mail import MailSink
from shared.testing.net import ThreadedServer, free_port

ISSUER = "preorder-user-service"
AUDIENCE = "preorder-api"


@dataclass
class KeyRing:
    """The keys the fake user_service publishes; tests add keys to simulate a rotation."""

    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)

    def add(self, kid: str) -> Ed25519PrivateKey:
        self.keys[kid] = Ed25519PrivateKey.generate()
        return self.keys[kid]

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid, key in self.keys.items():
            jwk = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
            out.append({**jwk, "kid": kid, "alg": "EdDSA", "use": "sig"})
        return {"keys": out}


def make_token(key: Ed25519PrivateKey, *, kid: str = "k1", sub: str = "42",
               sid: str | None = None, expires_in: int = 300, drop: tuple[str, ...] = (),
               typ: str = "at+jwt", **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "sid": sid or uuid.uuid4().hex,
        "jti": uuid.uuid4().hex, "iat": now, "exp": now + expires_in,
    }
    claims.update(overrides)
    for name in drop:
        claims.pop(name, None)
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid, "typ": typ})


# How often each echo upstream was asked its /readyz (the gateway's cache is tested on it).
READINESS_ASKED: dict[str, int] = {}


def echo_app(service: str, ring: KeyRing) -> Starlette:
    async def jwks(_: Request) -> JSONResponse:
        return JSONResponse(ring.jwks())

    async def readyz(_: Request) -> JSONResponse:
        READINESS_ASKED[service] = READINESS_ASKED.get(service, 0) + 1
        return JSONResponse({"status": "ready"})

    async def openapi(_: Request) -> JSONResponse:
        op = {"responses": {"200": {"description": "ok", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Thing"}}}}}}
        paths = {
            f"/api/v1/{service}s-own": {"get": op},
            "/api/v1/users/me": {"get": op},
            "/api/v1/users/{id}/followers": {"get": op},
            "/api/v1/products/{id}/stock": {"get": op},
            "/internal/secret": {"get": op},
        }
        schema = {"type": "object", "properties": {service: {"type": "string"}}}
        return JSONResponse({"openapi": "3.1.0", "info": {"title": service, "version": "1"},
                             "paths": paths, "components": {"schemas": {"Thing": schema}}})

    async def echo(request: Request) -> Response:
        if request.url.path.endswith("/hang"):
            await asyncio.sleep(30)
        if request.url.path.endswith("/held-poll"):
            # A long poll its service holds for all of its ?wait=.
            await asyncio.sleep(float(request.query_params.get("wait", "0")))
        if request.url.path.endswith("/redirect"):
            # As Starlette's redirect_slashes does: absolute, built from the Host header.
            return RedirectResponse(str(request.url.replace(path="/api/v1/users/me")), 307)
        if request.url.path.endswith("/fixed"):
            return Response(b"f" * 100, media_type="text/plain")
        if request.url.path.endswith("/streamed"):
            async def chunks() -> AsyncIterator[bytes]:
                for index in range(32):
                    await asyncio.sleep(0.005)
                    yield bytes([65 + index % 26]) * 65536

            return StreamingResponse(chunks(), media_type="application/octet-stream")
        if request.url.path.endswith("/live"):
            # Server-sent events: one at once, the next after `gap` seconds of silence.
            gap = float(request.query_params.get("gap", "0.5"))

            async def events() -> AsyncIterator[bytes]:
                yield b"id: 1\ndata: {\"n\":1}\n\n"
                await asyncio.sleep(gap)
                yield b"id: 2\ndata: {\"n\":2}\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        body = await request.body()
        return JSONResponse({
            "service": service,
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope["raw_path"].decode(),
            "query": request.url.query,
            "headers": {k: v for k, v in request.headers.items()},
            "body_length": len(body),
            "body": body[:200].decode("latin-1"),
        }, headers={"X-Upstream": service, "Set-Cookie": "a=b"})

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(routes=[
        Route("/.well-known/jwks.json", jwks),
        Route("/readyz", readyz),
        Route("/openapi.json", openapi),
        Route("/{path:path}", echo, methods=methods),
    ])


@dataclass
class Rig:
    gateway: ThreadedServer
    upstreams: dict[str, ThreadedServer]
    ring: KeyRing
    settings: Settings

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def metrics_url(self) -> str:
        """The gateway's internal metrics listener."""
        return f"http://127.0.0.1:{self.settings.metrics_port}/metrics"

    def token(self, **kwargs: Any) -> str:
        kid = kwargs.pop("kid", "k1")
        return make_token(self.ring.keys[kid], kid=kid, **kwargs)


def gateway_settings(upstreams: dict[str, str], redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {f"{name}_service_url": url for name, url in upstreams.items()}
    # No rate limits unless a test asks for them: the rig's tests share one user id.
    values.update(redis_url=redis_url, upstream_timeout_seconds=1.5, connect_timeout_seconds=0.5,
                  jwks_refetch_interval_seconds=0.0, environment="test",
                  rate_limit_per_user=0, rate_limit_per_network=0)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(autouse=True)
async def revocations_published(redis: Redis) -> None:
    """What user_service keeps true in production: without the epoch key the gateway refuses
    every token, as it must when Redis has lost the revoked sessions."""
    await redis.set(REVOCATION_EPOCH_KEY, "1")


@pytest.fixture(scope="session")
def rig(redis_url: str) -> Iterator[Rig]:
    ring = KeyRing()
    ring.add("k1")
    upstreams = {app.name: ThreadedServer(echo_app(app.name, ring)).start() for app in SERVICES}
    settings = gateway_settings({n: s.url for n, s in upstreams.items()}, redis_url,
                                metrics_port=free_port())
    gateway = ThreadedServer(create_app(settings)).start()
    yield Rig(gateway, upstreams, ring, settings)
    gateway.stop()
    for server in upstreams.values():
        server.stop()


@pytest.fixture
async def client(rig: Rig) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=rig.url, timeout=10) as c:
        yield c


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def system(
    mail_sink: MailSink, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    with running_system(mail_sink, redis_url, tmp_path_factory.mktemp("e2e-logs")) as running:
        yield running


@pytest.fixture
async def api(system: System) -> AsyncIterator[httpx.AsyncClient]:
    # From an address of its own: sign-ups, resends and logins are limited per address.
    async with client_at(system, new_client_address()) as client:
        yield client
