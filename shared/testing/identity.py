"""Acting as the gateway in a service's tests: the identity headers it forwards, signed.

    response = await client.get("/api/v1/orders", headers=signed_identity_headers(user_id, sid))

The root conftest puts TEST_IDENTITY_SIGNING_KEY in the environment (IDENTITY_SIGNING_KEY), so
every Settings a test builds, and every service process it starts, checks with the same key.
"""

from __future__ import annotations

import secrets
import time
import uuid

from shared.contracts import (
    CLIENT_IP_HEADER,
    IDENTITY_SIGNATURE_HEADER,
    REQUEST_ID_HEADER,
    SESSION_ID_HEADER,
    USER_ID_HEADER,
    identity_signature,
)

# New for every test run: no key in the repository could ever sign a real deployment's requests.
TEST_IDENTITY_SIGNING_KEY = f"test-only-{secrets.token_urlsafe(32)}"


def signed_identity_headers(
    user_id: int | None,
    session_id: str | None,
    key: str = TEST_IDENTITY_SIGNING_KEY,
    *,
    client_ip: str = "127.0.0.1",
    request_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """What the gateway sends with a request: a signed-in caller (user_id and session_id), or
    none (both None, as on a public route), and the client address it resolved."""
    request_id = request_id or uuid.uuid4().hex
    user = "" if user_id is None else str(user_id)
    session = session_id or ""
    signature = identity_signature(
        key.encode(), timestamp=int(time.time()) if timestamp is None else timestamp,
        user_id=user, session_id=session, request_id=request_id, client_ip=client_ip,
    )
    headers = {REQUEST_ID_HEADER: request_id, CLIENT_IP_HEADER: client_ip,
               IDENTITY_SIGNATURE_HEADER: signature}
    if user_id is not None:
        headers[USER_ID_HEADER] = user
    if session_id is not None:
        headers[SESSION_ID_HEADER] = session
    return headers
