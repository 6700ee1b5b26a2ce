"""Access-token verification: EdDSA keys from user_service's JWKS, pinned algorithm, revocation.

user_service alone holds the private key. The gateway keeps the public keys as key objects,
refetching the JWKS when a token names a kid it does not know, so keys rotate without downtime.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from redis.asyncio import Redis

from gateway.jwks import JwksCache
from gateway.revocation import RevocationList
from shared.contracts import (
    ACCESS_TOKEN_TYPE,
    is_session_id,
    parse_roles,
    parse_user_id,
    roles_header,
)

ALGORITHMS = ["EdDSA"]
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "sid"]
_MAX_TOKEN_LENGTH = 4096


def is_access_token_type(typ: object) -> bool:
    """`at+jwt`, or its full media type; media types compare case-insensitively."""
    if not isinstance(typ, str):
        return False
    typ = typ.lower()
    return typ in (ACCESS_TOKEN_TYPE, f"application/{ACCESS_TOKEN_TYPE}")


class TokenRejected(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class KeysUnavailable(Exception):
    """No verification key has ever been fetched (user_service unreachable): no token can be
    judged, so the answer is 503, not a 401 that would make clients drop a good token."""


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: int
    session_id: str
    expires_at: float
    # The token's `roles` claim, as the header services read (shared.contracts.roles_header).
    roles: str = ""


class VerifiedTokens:
    """Tokens whose signature and claims already checked out, until they expire.

    A client sends the same access token on every request for its whole life; checking the
    Ed25519 signature once instead of every time takes the largest cost off the hot path.
    Revocation is not cached: it is checked on every request. Bounded; oldest entries go first.
    """

    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, Identity] = {}

    def get(self, token: str, now: float) -> Identity | None:
        identity = self._entries.get(token)
        if identity is not None and identity.expires_at <= now:
            del self._entries[token]
            return None
        return identity

    def put(self, token: str, identity: Identity) -> None:
        if len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[token] = identity

    def clear(self) -> None:
        self._entries.clear()


class TokenVerifier:
    def __init__(self, jwks: JwksCache, redis: Redis, *, issuer: str, audience: str,
                 leeway: int) -> None:
        self.jwks = jwks
        self.revocations = RevocationList(redis)
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.verified = VerifiedTokens()
        jwks.on_key_removed.append(self.verified.clear)

    async def verify(self, authorization: str | None) -> Identity:
        if not authorization:
            raise TokenRejected("missing_token", "An Authorization: Bearer token is required.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenRejected("missing_token", "An Authorization: Bearer token is required.")
        if len(token) > _MAX_TOKEN_LENGTH:
            raise TokenRejected("invalid_token", "The access token is not valid.")
        identity = self.verified.get(token, time.time() - self.leeway)
        if identity is None:
            identity = await self._decode(token)
            self.verified.put(token, identity)
        if await self.revocations.is_revoked(identity.session_id):
            raise TokenRejected("token_revoked", "The access token has been revoked.")
        return identity

    async def _decode(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenRejected("invalid_token", "The access token is not valid.") from None
        # Checked before any key is chosen: `none`, HS256 with the public key as secret and
        # every other algorithm are refused outright.
        kid = header.get("kid")
        if header.get("alg") not in ALGORITHMS or not isinstance(kid, str):
            raise TokenRejected("invalid_token", "The access token is not valid.")
        if not is_access_token_type(header.get("typ")):
            # RFC 9068/8725: another JWT signed by the same key (an ID token, say) is no pass.
            raise TokenRejected("invalid_token", "The token is not an access token.")
        key = await self.jwks.get(kid)
        if key is None and not self.jwks.keys:
            raise KeysUnavailable
        if key is None:
            raise TokenRejected("invalid_token", "The access token was signed by an unknown key.")
        try:
            claims = jwt.decode(
                token, key, algorithms=ALGORITHMS, audience=self.audience, issuer=self.issuer,
                leeway=self.leeway, options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("token_expired", "The access token has expired.") from None
        except jwt.InvalidTokenError:
            raise TokenRejected("invalid_token", "The access token is not valid.") from None
        user_id, sid = parse_user_id(claims["sub"]), claims["sid"]
        roles = parse_roles(claims.get("roles"))
        if user_id is None or not is_session_id(sid) or roles is None:
            raise TokenRejected("invalid_token", "The access token is not valid.")
        return Identity(user_id=user_id, session_id=sid, expires_at=float(claims["exp"]),
                        roles=roles_header(roles))
