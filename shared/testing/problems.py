"""The one check that a response is the problem+json the contract promises.

    body = assert_problem(await client.post(...), 409, "sold_out")
    assert body["detail"] == "Only 3 left."
"""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM_FIELDS = frozenset({"type", "title", "status", "detail", "code", "request_id"})


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Status, media type and the RFC 9457 body with its stable `code`; returns the body for
    the checks particular to a test. The request id is not compared with the response header:
    an Idempotency-Key replay answers with the first request's body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json", response.text
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_FIELDS, body
    assert body["code"] == code, body
    assert body["status"] == status, body
    assert body["type"] == f"urn:preorder:problem:{code}", body
    assert isinstance(body["request_id"], str), body
    assert body["request_id"], body
    return body
