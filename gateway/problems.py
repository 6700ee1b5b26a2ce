"""Problem+json answers written straight to ASGI `send`, for the gateway's raw-ASGI paths (the
proxy runs in front of FastAPI, so FastAPI's handlers never see its errors)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.types import Send

from shared.edge_answers import Answer
from shared.errors import problem_document, status_title


def problem_body(status: int, code: str, detail: str) -> bytes:
    document = problem_document(status, code, status_title(status), detail)
    return json.dumps(document, separators=(",", ":")).encode()


async def send_problem(send: Send, status: int, code: str, detail: str,
                       headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = problem_body(status, code, detail)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
    })
    await send({"type": "http.response.body", "body": body})


async def send_answer(send: Send, answer: Answer) -> None:
    """An answer a service published for the edge (shared/edge_answers.py), in its own words:
    the same document the service would have sent, with this request's id."""
    document = problem_document(answer.status, answer.code, answer.title, answer.detail)
    body = json.dumps(document, separators=(",", ":")).encode()
    await send({
        "type": "http.response.start",
        "status": answer.status,
        "headers": [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
        ],
    })
    await send({"type": "http.response.body", "body": body})
