"""shared/http.py against a real loopback server: a call whose connection closed under it is sent
once more, and says so (RESENT_HEADER), so the receiver answers it from what the first did."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time

import pytest

from shared.contracts import NOT_READ_HEADER, parse_identity_signature
from shared.http import RESENT_HEADER, ServiceCallFailed, service_client
from shared.testing.identity import identity_verifier, signer


@pytest.mark.parametrize("how", ["closed", "reset"])
async def test_a_call_sent_again_after_the_connection_closed_says_it_was_resent(how: str) -> None:
    seen: list[dict[str, str]] = []

    async def closes_the_first(reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")[1:]
        headers = {name.lower(): value.strip() for name, _, value in
                   (line.partition(":") for line in lines if line)}
        await reader.readexactly(int(headers.get("content-length", "0")))
        seen.append(headers)
        if len(seen) > 1:
            body = json.dumps({"resent": RESENT_HEADER.lower() in headers}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        elif how == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()  # the first: carried out, perhaps, but never answered

    server = await asyncio.start_server(closes_the_first, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with service_client("stock_service", f"http://127.0.0.1:{port}",
                                  signer=signer("order_service"),
                                  timeout_seconds=5) as client:
            answer = await client.request("PUT", "/internal/x", json_body={"a": 1})
    finally:
        server.close()
        await server.wait_closed()
    assert (answer.status, answer.body) == (200, {"resent": True})
    assert len(seen) == 2
    assert RESENT_HEADER.lower() not in seen[0]
    # Signed anew for the resend: the first's nonce may have been spent by the receiver. Each
    # is signed for stock_service, as order_service, and only for this method, path and body.
    stock_service = identity_verifier("stock_service")  # one replay cache for both
    first, second = [stock_service.verify(
        headers["x-identity-signature"], headers, method="PUT", target="/internal/x",
        body=b'{"a":1}') for headers in seen]
    assert first.caller == second.caller == "order_service"


async def test_a_call_is_signed_when_its_connection_is_in_hand_not_before_its_wait() -> None:
    """A service refuses a signature 10 s old; a call that waited for a free connection must
    not arrive aged. With one connection, the second call waits 2.5 s behind the first: its
    signature is no older than the second it was written in."""
    written: list[tuple[float, int]] = []
    holding = asyncio.Event()

    async def holds_the_first(reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            signature = next(line.split(":", 1)[1].strip() for line in head.decode().split("\r\n")
                             if line.lower().startswith("x-identity-signature:"))
            parsed = parse_identity_signature(signature)
            assert parsed is not None
            written.append((time.time(), parsed[1]))
            if len(written) == 1:
                holding.set()
                await asyncio.sleep(2.5)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(holds_the_first, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with service_client("stock_service", f"http://127.0.0.1:{port}",
                                  signer=signer("order_service"), timeout_seconds=10,
                                  max_connections=1) as client:
            first = asyncio.create_task(client.request("GET", "/internal/first"))
            await asyncio.wait_for(holding.wait(), 5)
            second = await client.request("GET", "/internal/second")
            assert (await first).status == second.status == 200
    finally:
        server.close()
        await server.wait_closed()
    (_, _), (arrived, signed_at) = written
    assert arrived - signed_at < 1.5


async def _refusing_unread(times: int) -> tuple[asyncio.Server, list[dict[str, str]]]:
    """A service whose queue held the first `times` requests until their signatures aged: it
    refuses them unread (shared/identity.py), then answers."""
    seen: list[dict[str, str]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            lines = head.decode().split("\r\n")[1:]
            headers = {name.lower(): value.strip() for name, _, value in
                       (line.partition(":") for line in lines if line)}
            await reader.readexactly(int(headers.get("content-length", "0")))
            seen.append(headers)
            if len(seen) <= times:
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                             + NOT_READ_HEADER.encode() + b": aged\r\nContent-Length: 2\r\n\r\n{}")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), seen


async def test_a_call_refused_unread_is_sent_once_more_signed_anew() -> None:
    """Nothing ran, whatever the method: the call goes again at once (not marked resent, which
    would ask the receiver to answer from what the first did), with a fresh signature."""
    server, seen = await _refusing_unread(1)
    port = server.sockets[0].getsockname()[1]
    try:
        async with service_client("stock_service", f"http://127.0.0.1:{port}",
                                  signer=signer("order_service"), timeout_seconds=5) as client:
            answer = await client.request("POST", "/internal/x", json_body={"a": 1})
    finally:
        server.close()
        await server.wait_closed()
    assert (answer.status, answer.body) == (200, {"ok": True})
    assert len(seen) == 2
    assert all(RESENT_HEADER.lower() not in headers for headers in seen)
    stock_service = identity_verifier("stock_service")  # one replay cache for both
    for headers in seen:  # the second's nonce is new, or this one cache would refuse it
        stock_service.verify(headers["x-identity-signature"], headers, method="POST",
                             target="/internal/x", body=b'{"a":1}')


async def test_a_call_refused_unread_twice_fails() -> None:
    server, seen = await _refusing_unread(5)
    port = server.sockets[0].getsockname()[1]
    try:
        async with service_client("stock_service", f"http://127.0.0.1:{port}",
                                  signer=signer("order_service"), timeout_seconds=5) as client:
            with pytest.raises(ServiceCallFailed, match="answered 503"):
                await client.request("POST", "/internal/x", json_body={"a": 1})
    finally:
        server.close()
        await server.wait_closed()
    assert len(seen) == 2
