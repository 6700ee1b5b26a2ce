"""The keys of the forwarded identity: who may sign (one Ed25519 private key per signing app),
what every app verifies with (the public keys of every signer, by name), and the replay cache.

Asymmetric on purpose: a service holds the public keys only, so a service that is broken into
can sign as itself (and so call the internal routes that name it) but never as the gateway or as
another service. The message signed is shared.contracts.identity_message.

The keys are read, made and written with cryptography; the signing and the verifying, on every
forwarded request, are libsodium's (PyNaCl), whose Ed25519 took about half cryptography's time
to verify and three quarters to sign in one process (docs/performance.md). Ed25519 signatures
are deterministic: both libraries make the same bytes for the same key and message; libsodium's
verify is the stricter of the two (it also refuses small-order keys and non-canonical
encodings, which no honest signer makes).

Rotation: a signer's entry in IDENTITY_PUBLIC_KEYS lists every key of it that is believed, each
known by its key id (a thumbprint of the public key, carried in the signature), so during an
overlap the old and the new key both verify; the private key is switched once every app has the
new public key, and the old one is dropped from the list after IDENTITY_MAX_AGE_SECONDS.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import nacl.bindings
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from nacl.exceptions import BadSignatureError

from shared.contracts import (
    ARRIVED_AT_HEADER,
    CLIENT_IP_HEADER,
    IDENTITY_CALLER_HEADER,
    IDENTITY_MAX_AGE_SECONDS,
    REQUEST_ID_HEADER,
    SESSION_ID_HEADER,
    USER_ID_HEADER,
    USER_ROLES_HEADER,
    SignedFields,
    body_digest,
    format_identity_signature,
    identity_message,
    parse_identity_signature,
)

# Header names as ASGI gives them (lower case).
_CALLER = IDENTITY_CALLER_HEADER.lower()
_USER_ID = USER_ID_HEADER.lower()
_SESSION_ID = SESSION_ID_HEADER.lower()
_REQUEST_ID = REQUEST_ID_HEADER.lower()
_CLIENT_IP = CLIENT_IP_HEADER.lower()
_ROLES = USER_ROLES_HEADER.lower()
_ARRIVED_AT = ARRIVED_AT_HEADER.lower()
# The headers a signature covers (beside X-Identity-Signature itself), as ASGI names them: all
# that IdentityVerifier.verify reads of a request's headers.
SIGNED_HEADER_NAMES = frozenset(name.encode() for name in (
    _CALLER, _USER_ID, _SESSION_ID, _REQUEST_ID, _CLIENT_IP, _ROLES, _ARRIVED_AT))
# How a development key (deploy/development.env, published) begins; production refuses it.
DEVELOPMENT_KEY_PREFIX = "devonly-"


# The key ids of the public keys deploy/development.env publishes (with their private keys):
# production refuses an IDENTITY_PUBLIC_KEYS that lists one, since anyone could sign with it.
DEVELOPMENT_KEY_IDS = frozenset({"5007e816fe1998a0", "6670d339720d37c4", "a6fbd7a95f64dbd1",
                                 "aebac5d355c31e40", "d50f7c0fb894d657"})


class IdentityRefused(Exception):
    """A signature that does not check out; the reason is for the log, never for the caller."""


class IdentityAged(Exception):
    """A signature that checks out but aged past IDENTITY_MAX_AGE_SECONDS before the service
    read its request: nothing is done for it, as for a refused one, but the caller's credentials
    were good. Under overload an honest request can sit that long in a socket backlog."""


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def key_id(public_key: Ed25519PublicKey) -> str:
    """16 hex characters of the SHA-256 of the raw public key: names a key without a registry."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def parse_private_key(text: str) -> Ed25519PrivateKey:
    """A private key as the environment holds it: the 32-byte raw key in base64url (a
    development key may carry the `devonly-` prefix)."""
    text = text.strip().removeprefix(DEVELOPMENT_KEY_PREFIX)
    try:
        raw = _b64decode(text)
    except (binascii.Error, ValueError) as error:
        raise ValueError("an identity private key is 32 bytes in base64url") from error
    if len(raw) != 32:
        raise ValueError("an identity private key is 32 bytes in base64url")
    return Ed25519PrivateKey.from_private_bytes(raw)


def private_key_text(key: Ed25519PrivateKey) -> str:
    return _b64encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def public_key_text(key: Ed25519PublicKey) -> str:
    return _b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def parse_public_keys(text: str) -> dict[str, tuple[str, Ed25519PublicKey]]:
    """IDENTITY_PUBLIC_KEYS, a JSON object of signer name -> list of base64url public keys, as
    key id -> (signer, key)."""
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ValueError("IDENTITY_PUBLIC_KEYS is not JSON") from error
    if not isinstance(document, dict):
        raise ValueError("IDENTITY_PUBLIC_KEYS is a JSON object: signer -> [public keys]")
    keys: dict[str, tuple[str, Ed25519PublicKey]] = {}
    for signer, listed in document.items():
        if not isinstance(listed, list) or not all(isinstance(k, str) for k in listed):
            raise ValueError(f"IDENTITY_PUBLIC_KEYS[{signer!r}] is not a list of keys")
        for text_key in listed:
            try:
                public = Ed25519PublicKey.from_public_bytes(_b64decode(text_key))
            except (binascii.Error, ValueError) as error:
                raise ValueError(f"IDENTITY_PUBLIC_KEYS[{signer!r}] holds a key that is not "
                                 "32 bytes in base64url") from error
            kid = key_id(public)
            if kid in keys and keys[kid][0] != signer:
                raise ValueError("one public key is listed for two signers")
            keys[kid] = (signer, public)
    return keys


def public_keys_document(keys: Mapping[str, list[Ed25519PublicKey]]) -> str:
    """The IDENTITY_PUBLIC_KEYS value for these signers' keys."""
    return json.dumps({signer: [public_key_text(k) for k in listed]
                       for signer, listed in keys.items()}, separators=(",", ":"))


class IdentitySigner:
    """Signs as one signer (`gateway`, or the package of a service making an internal call)."""

    def __init__(self, caller: str, private_key: Ed25519PrivateKey) -> None:
        self.caller = caller
        self._key = private_key
        # libsodium's form of the key: the seed and the public key, 64 bytes.
        seed = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        self._secret = nacl.bindings.crypto_sign_seed_keypair(seed)[1]
        self.kid = key_id(private_key.public_key())

    def sign(self, *, audience: str, method: str, target: str, body: bytes, user_id: str = "",
             session_id: str = "", request_id: str = "", client_ip: str = "", roles: str = "",
             arrived_at: str = "", timestamp: int | None = None) -> str:
        """The X-Identity-Signature value for one request, with a fresh nonce: a request sent
        again (a retry) is signed again."""
        fields = SignedFields(
            kid=self.kid, timestamp=int(time.time()) if timestamp is None else timestamp,
            nonce=secrets.token_urlsafe(12), caller=self.caller, audience=audience,
            method=method, target=target, body_digest=body_digest(body), user_id=user_id,
            session_id=session_id, request_id=request_id, client_ip=client_ip, roles=roles,
            arrived_at=arrived_at)
        # crypto_sign answers the signature followed by the message.
        signature = nacl.bindings.crypto_sign(identity_message(fields), self._secret)[:64]
        return format_identity_signature(fields, signature)


class NonceCache:
    """Nonces of signatures accepted within their lifetime, in this process's memory.

    Why here and not in Redis: a Redis check would put a round trip (or a batch's wait) on
    every request of every service, and make each of them fail when Redis does. In memory it
    costs a set lookup. What it gives up: replicas of one service do not share it, so a
    captured request could be replayed once more to each other replica of the service it was
    addressed to, within IDENTITY_MAX_AGE_SECONDS, and only as the very same request (method,
    path, query, body and audience are signed). Reading that traffic needs a foothold inside
    the deployment's network already."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._order: collections.deque[tuple[float, str]] = collections.deque()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, nonce: str) -> bool:
        return nonce in self._seen

    def add(self, nonce: str, *, until: float, now: float) -> None:
        self._forget_before(now)
        self._seen.add(nonce)
        self._order.append((until, nonce))

    def _forget_before(self, now: float) -> None:
        # Signers' clocks differ a little, so the deque is only nearly in expiry order: an
        # entry may outlive its time behind a later one, which costs memory, never a replay.
        order = self._order
        while order and order[0][0] < now:
            self._seen.discard(order.popleft()[1])


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    caller: str
    user_id: str
    session_id: str
    client_ip: str
    roles: str
    arrived_at: str = ""


class IdentityVerifier:
    """Checks signatures addressed to `audience` (this service's package) against the public
    keys; one per process, with its replay cache."""

    def __init__(self, public_keys: Mapping[str, tuple[str, Ed25519PublicKey]], *,
                 audience: str) -> None:
        # The raw 32 bytes libsodium verifies with, parsed once.
        self._keys = {kid: (signer, public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))
                      for kid, (signer, public_key) in public_keys.items()}
        self.audience = audience
        self.nonces = NonceCache()

    def verify(self, signature: str, headers: Mapping[str, str], *, method: str, target: str,
               body: bytes, now: float | None = None) -> VerifiedSignature:
        """`headers`: lower-case names. `now`: when the request was received (its age is
        counted until then, not until a busy service got round to it)."""
        now = time.time() if now is None else now
        parsed = parse_identity_signature(signature)
        if parsed is None:
            raise IdentityRefused("malformed signature")
        kid, timestamp, nonce, raw_signature = parsed
        if timestamp - now > IDENTITY_MAX_AGE_SECONDS:
            raise IdentityRefused("signature from the future")
        known = self._keys.get(kid)
        if known is None:
            raise IdentityRefused("unknown key id")
        signer, public_key = known
        caller = headers.get(_CALLER, "")
        if caller != signer:
            raise IdentityRefused("a caller named by another signer's key")
        if nonce in self.nonces:
            raise IdentityRefused("replayed nonce")
        fields = SignedFields(
            kid=kid, timestamp=timestamp, nonce=nonce, caller=caller, audience=self.audience,
            method=method, target=target, body_digest=body_digest(body),
            user_id=headers.get(_USER_ID, ""), session_id=headers.get(_SESSION_ID, ""),
            request_id=headers.get(_REQUEST_ID, ""), client_ip=headers.get(_CLIENT_IP, ""),
            roles=headers.get(_ROLES, ""), arrived_at=headers.get(_ARRIVED_AT, ""))
        if len(raw_signature) != 64:
            raise IdentityRefused("malformed signature")
        try:
            nacl.bindings.crypto_sign_open(raw_signature + identity_message(fields), public_key)
        except BadSignatureError:
            raise IdentityRefused("wrong signature") from None
        # Judged after the key: only a genuine signature is told it is late (an aged forgery is
        # refused as any forgery). A late one is not remembered: it is never accepted anyway.
        if now - timestamp > IDENTITY_MAX_AGE_SECONDS:
            raise IdentityAged(f"signed {now - timestamp:.1f} s before it was read")
        self.nonces.add(nonce, until=timestamp + IDENTITY_MAX_AGE_SECONDS + 1, now=now)
        return VerifiedSignature(caller=caller, user_id=fields.user_id,
                                 session_id=fields.session_id, client_ip=fields.client_ip,
                                 roles=fields.roles, arrived_at=fields.arrived_at)


def identity_environment(keys: Mapping[str, Ed25519PrivateKey], *,
                         development: bool = False) -> dict[str, str]:
    """The environment that hands each app of `keys` (by package) its private key, and every
    app all their public keys: <PREFIX>_IDENTITY_PRIVATE_KEY and IDENTITY_PUBLIC_KEYS.
    `development`: the private keys marked as such (production refuses them)."""
    from shared.services import GATEWAY, SERVICES  # the registry; here only for the names

    prefixes = {app.package: app.env_prefix for app in (GATEWAY, *SERVICES)}
    mark = DEVELOPMENT_KEY_PREFIX if development else ""
    environment = {f"{prefixes[package]}_IDENTITY_PRIVATE_KEY": mark + private_key_text(key)
                   for package, key in keys.items()}
    environment["IDENTITY_PUBLIC_KEYS"] = public_keys_document(
        {package: [key.public_key()] for package, key in keys.items()})
    return environment


def new_identity_keys(packages: Iterable[str]) -> dict[str, Ed25519PrivateKey]:
    return {package: Ed25519PrivateKey.generate() for package in packages}
