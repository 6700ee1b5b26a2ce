"""What the gateway's lifespan opens and closes: upstream pools, Redis, the JWKS cache and its
refresher, and the token verifier. It is the gateway's Resources object."""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis

from gateway.auth import TokenVerifier
from gateway.fanout import SharedStreams
from gateway.headers import RESPONSE_DROP
from gateway.jwks import JwksCache, refresh_periodically
from gateway.rate_limits import RateLimiter
from gateway.routes import RouteTable
from gateway.settings import Settings
from gateway.upstreams import Upstreams
from shared.broadcast import Channels, Subscription
from shared.edge_answers import ANSWERS_TOPIC, EdgeAnswers
from shared.edge_finals import FINALS_TOPIC, EdgeFinals
from shared.lifespan import open_redis


class GatewayRuntime:
    """What the lifespan opens and closes: upstream pools, Redis, the JWKS cache and verifier."""

    def __init__(self, settings: Settings, table: RouteTable | None = None) -> None:
        self.settings = settings
        self.table = table or RouteTable()
        self.upstreams = Upstreams(settings)
        # Streams every client shares (gateway/fanout.py): one upstream stream per URL. A
        # cookie an upstream set on it would be handed to every client: never passed on.
        self.shared_streams = SharedStreams(
            drop_headers=RESPONSE_DROP | {b"set-cookie"},
            max_response_bytes=settings.max_response_bytes,
            stall_seconds=settings.stream_idle_timeout_seconds)
        self._verifier: TokenVerifier | None = None
        self._redis: Redis | None = None
        self._jwks_refresher: asyncio.Task[None] | None = None
        self._rate_limits: RateLimiter | None = None
        # Answers services publish for the gateway to give without forwarding (sold out), and
        # final states of resources their owners read (answered tickets).
        # A new answer is given at once to whoever waits for a connection and it answers.
        self.edge_answers = EdgeAnswers(on_answer=self.upstreams.look_again_soon)
        self.edge_finals = EdgeFinals(max_held=settings.edge_finals_max_held)
        channels = Channels(settings.pubsub_prefix)
        self._answers = Subscription(
            settings.redis_url,
            {channels.name(ANSWERS_TOPIC): self.edge_answers.heard,
             channels.name(FINALS_TOPIC): self.edge_finals.heard},
            on_connected=self._on_subscribed)

    def pending_for(self, path: str, user_id: str) -> bytes | None:
        """A pending state heard for `path` (shared/edge_finals.py), only while the subscription
        is up: while it is down, its final may be published and missed."""
        if not self._answers.connected.is_set():
            return None
        return self.edge_finals.pending_for(path, user_id)

    async def _on_subscribed(self) -> None:
        # Finals published while the subscription was down were missed: a pending state heard
        # before then could stand for a resource answered meanwhile.
        self.edge_finals.forget_pending()
        await self.edge_answers.load(self.redis, self.settings.pubsub_prefix)

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("gateway runtime used outside its lifespan")
        return self._redis

    @property
    def rate_limits(self) -> RateLimiter:
        if self._rate_limits is None:
            raise RuntimeError("gateway runtime used outside its lifespan")
        return self._rate_limits

    @property
    def verifier(self) -> TokenVerifier:
        if self._verifier is None:
            raise RuntimeError("gateway runtime used outside its lifespan")
        return self._verifier

    async def start(self) -> None:
        settings = self.settings
        await self.upstreams.start()
        if settings.redis_cluster:
            self._redis = open_redis(settings.redis_url, cluster=True, connect_timeout=1,
                                     timeout=2)
        else:
            self._redis = Redis.from_url(settings.redis_url, decode_responses=True,
                                         socket_connect_timeout=1, socket_timeout=2,
                                         max_connections=512)
        jwks = JwksCache(f"{settings.user_service_url}/.well-known/jwks.json",
                         self.upstreams.sessions["user"],
                         refetch_interval=settings.jwks_refetch_interval_seconds)
        await jwks.fetch()
        self._verifier = TokenVerifier(jwks, self._redis, issuer=settings.jwt_issuer,
                                       audience=settings.jwt_audience,
                                       leeway=settings.jwt_leeway_seconds)
        self._jwks_refresher = asyncio.create_task(
            refresh_periodically(jwks, settings.jwks_max_age_seconds))
        self._rate_limits = RateLimiter(
            self._redis, prefix=settings.pubsub_prefix,
            window_seconds=settings.rate_limit_window_seconds,
            per_user=settings.rate_limit_per_user, per_network=settings.rate_limit_per_network,
            ipv4_prefix=settings.rate_limit_ipv4_prefix,
            ipv6_prefix=settings.rate_limit_ipv6_prefix)
        await self._answers.start()

    async def close(self) -> None:
        await self.shared_streams.close()
        await self._answers.close()
        if self._jwks_refresher is not None:
            self._jwks_refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._jwks_refresher
        await self.upstreams.close()
        if self._redis is not None:
            await self._redis.aclose()
