"""The signature's arithmetic is libsodium's, its keys cryptography's: the two agree on every
byte, so a signature is the same whichever made it, and a forgery one of them would refuse the
other refuses too."""

from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.contracts import SignedFields, body_digest, identity_message, parse_identity_signature
from shared.identity_keys import IdentityRefused, IdentitySigner, IdentityVerifier, key_id

FIELDS = {"user_id": "42", "session_id": "s" * 32, "request_id": "r" * 32,
          "client_ip": "203.0.113.7", "roles": "", "arrived_at": "1765000000000000"}
HEADERS = {"x-identity-caller": "gateway", "x-user-id": "42", "x-session-id": "s" * 32,
           "x-request-id": "r" * 32, "x-forwarded-for": "203.0.113.7",
           "x-arrived-at": "1765000000000000"}


def signed(signer: IdentitySigner) -> str:
    return signer.sign(audience="order_service", method="POST", target="/api/v1/orders",
                       body=b'{"product_id":1}', user_id=FIELDS["user_id"],
                       session_id=FIELDS["session_id"], request_id=FIELDS["request_id"],
                       client_ip=FIELDS["client_ip"], roles=FIELDS["roles"],
                       arrived_at=FIELDS["arrived_at"])


def message_of(signature: str) -> tuple[bytes, bytes]:
    parsed = parse_identity_signature(signature)
    assert parsed is not None
    kid, timestamp, nonce, raw = parsed
    return raw, identity_message(SignedFields(
        kid=kid, timestamp=timestamp, nonce=nonce, caller="gateway", audience="order_service",
        method="POST", target="/api/v1/orders", body_digest=body_digest(b'{"product_id":1}'),
        **FIELDS))


def test_a_signature_is_the_one_cryptography_makes_and_checks() -> None:
    key = Ed25519PrivateKey.generate()
    raw, message = message_of(signed(IdentitySigner("gateway", key)))
    assert raw == key.sign(message)
    key.public_key().verify(raw, message)


def test_a_signature_cryptography_made_is_believed_and_a_changed_one_is_not() -> None:
    key = Ed25519PrivateKey.generate()
    verifier = IdentityVerifier({key_id(key.public_key()): ("gateway", key.public_key())},
                                audience="order_service")
    signature = signed(IdentitySigner("gateway", key))
    raw, message = message_of(signature)
    by_cryptography = signature.rsplit(".", 1)[0] + "." + base64.urlsafe_b64encode(
        key.sign(message)).rstrip(b"=").decode()
    verifier.verify(by_cryptography, HEADERS, method="POST", target="/api/v1/orders",
                    body=b'{"product_id":1}')
    # One bit off, in the signature or in the message: both libraries refuse.
    flipped = bytes([raw[0] ^ 1]) + raw[1:]
    with pytest.raises(InvalidSignature):
        key.public_key().verify(flipped, message)
    other = signed(IdentitySigner("gateway", key))
    forged = other.rsplit(".", 1)[0] + "." + base64.urlsafe_b64encode(
        flipped).rstrip(b"=").decode()
    with pytest.raises(IdentityRefused, match="wrong signature"):
        verifier.verify(forged, HEADERS, method="POST", target="/api/v1/orders",
                        body=b'{"product_id":1}')
