"""What the forwarded identity's signature costs, per request, in this process:

- sign: what the gateway does for every forwarded request (and a service for each internal
  call): a fresh nonce, the body's digest, Ed25519 over the message;
- verify: what a service does for every signed request it receives: parse, key lookup, replay
  cache, the body's digest, Ed25519 verification;
- for scale, the HMAC-SHA256 over a message of the same size that the previous, symmetric
  signature cost, and a hello-world's share of a request (its req/s on this machine turned into
  µs, if given with --hello-rps).

    python -m loadtests.bench_identity [--seconds 2] [--hello-rps N]

Timings are the median of five runs of `--seconds` each; run it beside `make bench` to read the
share of a request the signature takes.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import secrets
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.identity_keys import IdentitySigner, IdentityVerifier, key_id

BODY = b'{"product_id":12345,"quantity":1}'
TARGET = "/api/v1/orders"
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
    hmac_us = per_call_us(symmetric, args.seconds)
    print(f"sign (Ed25519, nonce, body digest):          {sign_us:7.1f} us")
    print(f"verify (Ed25519, replay cache, body digest):  {verify_us:7.1f} us")
    print(f"HMAC-SHA256 of the same size, for scale:      {hmac_us:7.1f} us")
    if args.hello_rps:
        request_us = 1e6 / args.hello_rps
        print(f"a hello-world request on this machine:        {request_us:7.1f} us "
              f"(sign {sign_us / request_us:.0%} of it, verify {verify_us / request_us:.0%})")


if __name__ == "__main__":
    main()
