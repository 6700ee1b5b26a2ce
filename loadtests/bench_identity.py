"""What the forwarded identity's signature costs, per request, in this process:

- sign: what the gateway does for every forwarded request (and a service for each internal
  call): a fresh nonce, the body's digest, Ed25519 over the message;
- verify: what a service does for every signed request it receives: parse, key lookup, replay
  cache, the body's digest, Ed25519 verification;
- the Ed25519 arithmetic alone (libsodium's sign and verify of the same message, which the
  two above use): what of them no code of ours can make cheaper; and cryptography's, which they
  used before, for comparison;
- the IdentityCheck layer a service puts in front of its app, for a GET as the gateway forwards
  it (the headers picked, the empty body read, the identity handed on), with its verify, and
  its own share without it (the verify replaced by one that only reads the headers);
- for scale, the HMAC-SHA256 over a message of the same size that the previous, symmetric
  signature cost, and a hello-world's share of a request (its req/s on this machine turned into
  µs, if given with --hello-rps).

    python -m loadtests.bench_identity [--seconds 2] [--hello-rps N]

Timings are the median of five runs of `--seconds` each; run it beside `make bench` to read the
share of a request the signature takes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import secrets
import statistics
import time
from collections.abc import Callable, Mapping

import nacl.bindings
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.contracts import SignedFields, body_digest, identity_message
from shared.identity import IDENTITY_VERIFIER_STATE, IdentityCheck
from shared.identity_keys import IdentitySigner, IdentityVerifier, VerifiedSignature, key_id

BODY = b'{"product_id":12345,"quantity":1}'
TARGET = "/api/v1/orders"
GET_TARGET = "/api/v1/users/me"
# GETs sent through IdentityCheck (each signature once, like the verified ones).
LAYER_REQUESTS = 2_000
# Signatures verified (each once).
VERIFIED = 2_000


def per_call_us(work: Callable[[], object], seconds: float) -> float:
    runs = []
    for _ in range(5):
        count = 0
        started = time.perf_counter()
        deadline = started + seconds / 5
        while time.perf_counter() < deadline:
            for _ in range(100):
                work()
            count += 100
        runs.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(runs)


def message_of(fields: dict[str, str]) -> bytes:
    """A message of the size the gateway signs for a GET (shared.contracts.identity_message)."""
    return identity_message(SignedFields(
        kid="0" * 16, timestamp=int(time.time()), nonce=secrets.token_urlsafe(12),
        caller="gateway", audience="user_service", method="GET", target=GET_TARGET,
        body_digest=body_digest(b""), user_id=fields["x-user-id"],
        session_id=fields["x-session-id"], request_id=fields["x-request-id"],
        client_ip=fields["x-forwarded-for"], roles="", arrived_at=str(time.time_ns() // 1000)))


def verifier_for(key: Ed25519PrivateKey) -> IdentityVerifier:
    return IdentityVerifier({key_id(key.public_key()): ("gateway", key.public_key())},
                            audience="user_service")


class HeadersOnly(IdentityVerifier):
    """Reads what a verify reads of the headers and vouches for them, checking nothing: what is
    left of the layer's cost without the signature's."""

    def __init__(self) -> None:
        pass

    def verify(self, signature: str, headers: Mapping[str, str], *, method: str, target: str,
               body: bytes, now: float | None = None) -> VerifiedSignature:
        return VerifiedSignature(caller=headers.get("x-identity-caller", ""),
                                 user_id=headers.get("x-user-id", ""),
                                 session_id=headers.get("x-session-id", ""),
                                 client_ip=headers.get("x-forwarded-for", ""),
                                 roles=headers.get("x-user-roles", ""),
                                 arrived_at=headers.get("x-arrived-at", ""))


async def layer_per_request_us(signer: IdentitySigner, verifier: IdentityVerifier,
                               timestamp: int) -> float:
    """IdentityCheck in front of an app that reads the body and answers nothing, for GETs as the
    gateway forwards them (its headers, in its order), less the same app called bare."""
    arrived_at = str(time.time_ns() // 1000)
    common = [(b"host", b"127.0.0.1:8001"), (b"accept", b"*/*"),
              (b"accept-encoding", b"gzip, deflate"), (b"user-agent", b"Python/3.11 aiohttp"),
              (b"x-request-id", secrets.token_hex(16).encode()),
              (b"x-forwarded-for", b"127.0.0.1"), (b"x-user-id", b"123456"),
              (b"x-session-id", secrets.token_hex(16).encode()),
              (b"x-arrived-at", arrived_at.encode())]
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    def scope(signature: str) -> Scope:
        return {"type": "http", "method": "GET", "path": GET_TARGET,
                "raw_path": GET_TARGET.encode(), "query_string": b"",
                "headers": [*common, (b"x-identity-signature", signature.encode()),
                            (b"x-identity-caller", b"gateway")],
                "state": {IDENTITY_VERIFIER_STATE: verifier}}

    async def timed(handler: ASGIApp, signatures: list[str]) -> float:
        started = time.perf_counter()
        for signature in signatures:
            await handler(scope(signature), receive, send)
        return (time.perf_counter() - started) / len(signatures) * 1e6

    layer = IdentityCheck(app)
    runs = []
    for _ in range(5):
        # Fresh ones each run: the verifier takes each once.
        signatures = [signer.sign(
            audience="user_service", method="GET", target=GET_TARGET, body=b"",
            user_id="123456", session_id=common[7][1].decode(),
            request_id=common[4][1].decode(), client_ip="127.0.0.1", arrived_at=arrived_at,
            timestamp=timestamp) for _ in range(LAYER_REQUESTS)]
        runs.append(await timed(layer, signatures) - await timed(app, signatures))
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--hello-rps", type=float, default=None,
                        help="a hello-world's req/s measured beside this, for scale")
    args = parser.parse_args()
    key = Ed25519PrivateKey.generate()
    signer = IdentitySigner("gateway", key)
    verifier = IdentityVerifier({key_id(key.public_key()): ("gateway", key.public_key())},
                                audience="order_service")
    fields = {"x-identity-caller": "gateway", "x-user-id": "123456",
              "x-session-id": secrets.token_hex(16), "x-request-id": secrets.token_hex(16),
              "x-forwarded-for": "203.0.113.7", "x-user-roles": ""}

    def sign(timestamp: int | None = None) -> str:
        return signer.sign(audience="order_service", method="POST", target=TARGET, body=BODY,
                           user_id=fields["x-user-id"], session_id=fields["x-session-id"],
                           request_id=fields["x-request-id"],
                           client_ip=fields["x-forwarded-for"], timestamp=timestamp)

    # Verification takes each signature once (the replay cache), so they are made beforehand,
    # dated ahead so that none is stale by the time it is checked (checked right after).
    ahead = int(time.time()) + 9
    made = [sign(ahead) for _ in range(VERIFIED)]

    def verify_all() -> float:
        started = time.perf_counter()
        for signature in made:
            verifier.verify(signature, fields, method="POST", target=TARGET, body=BODY)
        return (time.perf_counter() - started) / len(made) * 1e6

    hmac_key = secrets.token_bytes(32)
    message = ("\n".join(["v1", str(int(time.time())), *fields.values(), TARGET])).encode()

    def symmetric() -> str:
        return hmac.new(hmac_key, message, hashlib.sha256).hexdigest()

    verify_us = verify_all()
    sign_us = per_call_us(sign, args.seconds)
    signed_message = message_of(fields)
    raw_signature = key.sign(signed_message)
    public = key.public_key()
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    secret = nacl.bindings.crypto_sign_seed_keypair(seed)[1]
    public_raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    raw_sign_us = per_call_us(lambda: nacl.bindings.crypto_sign(signed_message, secret),
                              args.seconds)
    raw_verify_us = per_call_us(lambda: nacl.bindings.crypto_sign_open(
        raw_signature + signed_message, public_raw), args.seconds)
    cryptography_sign_us = per_call_us(lambda: key.sign(signed_message), args.seconds)
    cryptography_verify_us = per_call_us(lambda: public.verify(raw_signature, signed_message),
                                         args.seconds)
    layer_us = asyncio.run(layer_per_request_us(signer, verifier_for(key), ahead))
    layer_alone_us = asyncio.run(layer_per_request_us(signer, HeadersOnly(), ahead))
    hmac_us = per_call_us(symmetric, args.seconds)
    print(f"sign (Ed25519, nonce, body digest):          {sign_us:7.1f} us")
    print(f"  of which the Ed25519 arithmetic:            {raw_sign_us:7.1f} us "
          f"(cryptography's: {cryptography_sign_us:.1f} us)")
    print(f"verify (Ed25519, replay cache, body digest):  {verify_us:7.1f} us")
    print(f"  of which the Ed25519 arithmetic:            {raw_verify_us:7.1f} us "
          f"(cryptography's: {cryptography_verify_us:.1f} us)")
    print(f"IdentityCheck layer for a GET, with verify:   {layer_us:7.1f} us")
    print(f"  the layer alone (no verify):                {layer_alone_us:7.1f} us")
    print(f"HMAC-SHA256 of the same size, for scale:      {hmac_us:7.1f} us")
    if args.hello_rps:
        request_us = 1e6 / args.hello_rps
        print(f"a hello-world request on this machine:        {request_us:7.1f} us "
              f"(sign {sign_us / request_us:.0%} of it, verify {verify_us / request_us:.0%})")


if __name__ == "__main__":
    main()
