"""Contracts between the gateway and the services, written once and imported by both sides.

A change here changes what one process writes and another reads; both sides must deploy it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import TypeGuard

# Headers the gateway alone sets on a forwarded request (it drops any a client sent).
USER_ID_HEADER = "X-User-Id"
SESSION_ID_HEADER = "X-Session-Id"
# The caller's roles (the access token's `roles` claim), comma-separated, sorted; absent: none.
USER_ROLES_HEADER = "X-User-Roles"
CLIENT_IP_HEADER = "X-Forwarded-For"
REQUEST_ID_HEADER = "X-Request-Id"
IDENTITY_SIGNATURE_HEADER = "X-Identity-Signature"
# Who signed: `gateway`, or the package of the service making an internal call. Each internal
# route names the callers it answers (shared.identity.internal_callers).
IDENTITY_CALLER_HEADER = "X-Identity-Caller"
GATEWAY_CALLER = "gateway"
# When the request reached the gateway, in microseconds since the epoch (signed): the line of an
# opening (order_service/orders/line.py) gives places in this order, whichever replica of the
# gateway or of the service a request went through.
ARRIVED_AT_HEADER = "X-Arrived-At"
_ARRIVED_AT = re.compile(r"[0-9]{1,17}")

# Ids are positive integers below 2**53 (API.md), so JavaScript clients hold them exactly.
MAX_ID = 2**53 - 1
# ASCII digits only, at most 16 of them (2**53 has 16): str.isdigit() also accepts "²", which
# int() refuses, and int() refuses strings of over 4300 digits; either would be a 500.
_USER_ID = re.compile(r"[0-9]{1,16}")
# A login session's id (the access token's `sid` claim): 32 lowercase hex characters.
# fullmatch, never ^...$: `$` also matches before a trailing newline.
_SESSION_ID = re.compile(r"[0-9a-f]{32}")


def parse_user_id(raw: object) -> int | None:
    """The user id in `raw` (a header value or a token's `sub`), or None if it is not one."""
    if not isinstance(raw, str) or not _USER_ID.fullmatch(raw):
        return None
    value = int(raw)
    return value if 0 < value <= MAX_ID else None


def is_session_id(raw: object) -> TypeGuard[str]:
    return isinstance(raw, str) and _SESSION_ID.fullmatch(raw) is not None


# Roles an operator grants (python -m user_service.roles); a token's `roles` claim names only these.
SELLER_ROLE = "seller"
ROLES = frozenset({SELLER_ROLE})


def parse_roles(raw: object) -> frozenset[str] | None:
    """The roles in a token's `roles` claim (a list of names), None if it is not one. A role
    this version does not know is dropped, not refused: a newer user_service may grant more."""
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or len(raw) > 16 or not all(isinstance(r, str) for r in raw):
        return None
    return frozenset(role for role in raw if role in ROLES)


def roles_header(roles: frozenset[str]) -> str:
    return ",".join(sorted(roles))


def roles_from_header(raw: str) -> frozenset[str]:
    """Only under a checked signature: the names the gateway wrote, known ones only."""
    return frozenset(role for role in raw.split(",") if role in ROLES)


# Access tokens: user_service signs with these, the gateway verifies against them.
JWT_ISSUER = "preorder-user-service"
JWT_AUDIENCE = "preorder-api"
# The `typ` header of an access token (RFC 9068); the gateway refuses any other.
ACCESS_TOKEN_TYPE = "at+jwt"

# To revoke a session, user_service sets this key on the Redis the gateway reads; while it
# exists the gateway answers 401 `token_revoked` to every access token of that session.
# One hash tag, `{auth:revocation}`, for these keys and REVOCATION_EPOCH_KEY: on a Redis Cluster
# they share one shard, so the gateway reads them in one MGET, and a shard that loses its data
# loses the epoch key with the revocations (never the revocations alone, unnoticed).
REVOKED_SESSION_KEY = "{{auth:revocation}}:session:{sid}"


def revoked_session_key(session_id: str) -> str:
    return REVOKED_SESSION_KEY.format(sid=session_id)


# user_service answers on this route whether a user exists: 200 {"id": <id>}, or 404 problem+json.
# Internal: the gateway never routes /internal/**; social_service asks it before a follow.
INTERNAL_USER_PATH = "/internal/users/{user_id}"


def internal_user_path(user_id: int) -> str:
    return INTERNAL_USER_PATH.format(user_id=user_id)


# Redis is the fast gate, MySQL the truth: user_service writes this key (no expiry) once every
# session revoked within the access-token lifetime is in Redis. If Redis loses its data (a
# restart without persistence, a failover, a FLUSHDB) the key is gone with the revocations, and
# the gateway refuses every token (503) until user_service has published them again from MySQL.
# Its value is when that was done (unix seconds), for whoever looks.
REVOCATION_EPOCH_KEY = "{auth:revocation}:epoch"


# Services believe the identity headers above only under a signature (shared.identity_keys):
# Ed25519, by the gateway for a forwarded request or by the calling service for an internal
# call, each with a private key of its own; every app holds only the public keys
# (IDENTITY_PUBLIC_KEYS). The signed message binds the identity to the one request it came
# with, one field per line:
#
#     v2 \n <key id> \n <unix seconds> \n <nonce> \n <caller> \n <audience> \n <method>
#        \n <raw path and query> \n <SHA-256 of the body, hex> \n <user id> \n <session id>
#        \n <request id> \n <client address> \n <roles> \n <arrived at>
#
# (user and session id, client address, roles and arrival empty where there are none; the
# audience is the package of the service addressed), sent as
# `X-Identity-Signature: v2.<key id>.<unix seconds>.<nonce>.<signature, base64url>`. No field
# can hold a line break (HTTP forbids them in a request line and in header values), so the
# fields cannot be shifted into one another. The receiver rebuilds the message from what it
# received, so another method, path, query, body or service than the one signed fails the check;
# and it refuses a nonce it has seen within the signature's lifetime.
IDENTITY_SIGNATURE_VERSION = "v2"
# A signature further than this from the service's clock when the request arrives is refused,
# so a captured request cannot be replayed later and the replay cache stays small. The gateway
# signs just before it forwards; this leaves room for clock skew between hosts.
IDENTITY_MAX_AGE_SECONDS = 10
# On a service's answer: the request was not run, only refused unread (its signature aged
# before the service read it). Its sender may send it again, signed anew, whatever its method;
# the gateway does so once and never passes the header on.
NOT_READ_HEADER = "X-Request-Not-Read"
# On a service's answer to GET <path>: "pending", the resource is not final yet and its final
# state will be published for the edge (shared/edge_finals.py), so the gateway may hold its
# owner's <path>/events stream itself; "final", this answer is its final state (the stream is
# that one event). Between a service and the gateway only.
EDGE_FINAL_HEADER = "X-Edge-Final"
EDGE_FINAL_PENDING = "pending"
EDGE_FINAL_FINAL = "final"


@dataclass(frozen=True, slots=True)
class SignedFields:
    kid: str
    timestamp: int
    nonce: str
    caller: str
    audience: str
    method: str
    target: str
    body_digest: str
    user_id: str
    session_id: str
    request_id: str
    client_ip: str
    roles: str
    arrived_at: str = ""


def identity_message(fields: SignedFields) -> bytes:
    return "\n".join((IDENTITY_SIGNATURE_VERSION, fields.kid, str(fields.timestamp),
                      fields.nonce, fields.caller, fields.audience, fields.method, fields.target,
                      fields.body_digest, fields.user_id, fields.session_id, fields.request_id,
                      fields.client_ip, fields.roles, fields.arrived_at)).encode("latin-1")


_EMPTY_BODY_DIGEST = hashlib.sha256(b"").hexdigest()


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest() if body else _EMPTY_BODY_DIGEST


def request_target(raw_path: bytes, query_string: bytes) -> str:
    """The raw path and query as they travel in the request line (what is signed). A raw path
    never holds a `?` of its own (it would begin the query); some ASGI servers and test
    transports leave the query on it, so it is cut there."""
    path = raw_path.split(b"?", 1)[0].decode("latin-1")
    return f"{path}?{query_string.decode('latin-1')}" if query_string else path


def format_identity_signature(fields: SignedFields, signature: bytes) -> str:
    encoded = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return (f"{IDENTITY_SIGNATURE_VERSION}.{fields.kid}.{fields.timestamp}.{fields.nonce}."
            f"{encoded}")


def parse_identity_signature(value: str) -> tuple[str, int, str, bytes] | None:
    """(key id, unix seconds, nonce, raw signature) of a well-formed X-Identity-Signature."""
    match = _SIGNATURE.fullmatch(value)
    if match is None:
        return None
    kid, timestamp, nonce, encoded = match.groups()
    return kid, int(timestamp), nonce, base64.urlsafe_b64decode(encoded + "==")


def parse_arrived_at(raw: str) -> int | None:
    """The arrival an X-Arrived-At value states (microseconds since the epoch), else None."""
    return int(raw) if _ARRIVED_AT.fullmatch(raw) else None


def signature_timestamp(value: str) -> int | None:
    """The signing time a well-formed X-Identity-Signature states, else None."""
    parsed = parse_identity_signature(value)
    return None if parsed is None else parsed[1]


# An Ed25519 signature is 64 bytes: 86 base64url characters unpadded.
_SIGNATURE = re.compile(r"v2\.([0-9a-f]{16})\.([0-9]{1,12})\.([A-Za-z0-9_-]{16,64})\."
                        r"([A-Za-z0-9_-]{86})")
