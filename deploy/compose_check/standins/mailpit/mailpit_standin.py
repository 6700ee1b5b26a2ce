"""A stand-in for Mailpit (axllent/mailpit), for machines that cannot pull its image.

Not Mailpit: a small server with the part of Mailpit's behaviour that this project relies on.
SMTP (MP_SMTP_BIND_ADDR, default 0.0.0.0:1025) accepts every message without authentication;
the HTTP API (MP_UI_BIND_ADDR, default 0.0.0.0:8025) answers, in Mailpit's JSON shapes:

    GET    /api/v1/messages?start=&limit=       newest first
    GET    /api/v1/search?query=&start=&limit=  to:, from:, subject: and plain words, all must match
    GET    /api/v1/message/{ID}                 one message, with its Text and HTML; ID may be latest
    DELETE /api/v1/messages                     delete them all
    GET    /livez, /readyz                      200 while serving

Messages are kept in memory, as Mailpit keeps them without a database file. There is no web UI.
Runs on Debian's python3 with python3-aiosmtpd.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shlex
import signal
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.smtp import SMTP

SNIPPET_LENGTH = 250
DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class StoredMessage:
    id: str
    message_id: str
    sender: dict[str, str]
    to: list[dict[str, str]]
    cc: list[dict[str, str]]
    subject: str
    created: str
    date: str
    size: int
    text: str
    html: str

    def summary(self) -> dict[str, Any]:
        return {
            "ID": self.id, "MessageID": self.message_id, "Read": False, "From": self.sender,
            "To": self.to, "Cc": self.cc, "Bcc": [], "ReplyTo": [], "Subject": self.subject,
            "Created": self.created, "Tags": [], "Size": self.size, "Attachments": 0,
            "Snippet": " ".join(self.text.split())[:SNIPPET_LENGTH],
        }

    def detail(self) -> dict[str, Any]:
        return {
            "ID": self.id, "MessageID": self.message_id, "From": self.sender, "To": self.to,
            "Cc": self.cc, "Bcc": [], "ReplyTo": [], "ReturnPath": self.sender["Address"],
            "Subject": self.subject, "ListUnsubscribe": {}, "Date": self.date, "Tags": [],
            "Text": self.text, "HTML": self.html, "Size": self.size, "Inline": [],
            "Attachments": [],
        }

    def matches(self, term: str) -> bool:
        """One term of Mailpit's search syntax; plain words match anywhere, ignoring case."""
        field, _, value = term.partition(":")
        value = value.lower()
        if field == "to" and value:
            return any(value in address["Address"].lower() for address in self.to + self.cc)
        if field == "from" and value:
            return value in self.sender["Address"].lower()
        if field == "subject" and value:
            return value in self.subject.lower()
        word = term.lower()
        haystack = [self.subject, self.text, self.sender["Address"]]
        haystack += [address["Address"] for address in self.to]
        return any(word in text.lower() for text in haystack)


def _addresses(message: EmailMessage, header: str) -> list[dict[str, str]]:
    values = [str(value) for value in message.get_all(header, [])]
    return [{"Name": name, "Address": address} for name, address in getaddresses(values)]


def _body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    return str(part.get_content()) if part is not None else ""


def parse_message(message_id: str, content: bytes, envelope_from: str,
                  envelope_to: list[str]) -> StoredMessage:
    message = message_from_bytes(content, policy=policy.default)
    assert isinstance(message, EmailMessage)
    senders = _addresses(message, "From") or [{"Name": "", "Address": envelope_from}]
    recipients = _addresses(message, "To") or [
        {"Name": "", "Address": address} for address in envelope_to]
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return StoredMessage(
        id=message_id,
        message_id=str(message.get("Message-ID", "")).strip("<>"),
        sender=senders[0],
        to=recipients,
        cc=_addresses(message, "Cc"),
        subject=str(message.get("Subject", "")),
        created=now,
        date=now,
        size=len(content),
        text=_body(message, "plain"),
        html=_body(message, "html"),
    )


class Mailbox:
    """Every message received, newest first; shared by the SMTP loop and the HTTP threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[StoredMessage] = []
        self._ids = itertools.count(1)

    def next_id(self) -> str:
        with self._lock:
            return f"{next(self._ids):022d}"

    def add(self, message: StoredMessage) -> None:
        with self._lock:
            self._messages.insert(0, message)

    def search(self, terms: list[str]) -> list[StoredMessage]:
        with self._lock:
            return [m for m in self._messages if all(m.matches(term) for term in terms)]

    def get(self, message_id: str) -> StoredMessage | None:
        with self._lock:
            if message_id == "latest":
                return self._messages[0] if self._messages else None
            return next((m for m in self._messages if m.id == message_id), None)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()


class SmtpHandler:
    """aiosmtpd handler: every message is accepted and kept."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        self.mailbox.add(parse_message(
            self.mailbox.next_id(), content, str(envelope.mail_from),
            [str(address) for address in envelope.rcpt_tos]))
        return "250 2.0.0 Ok: queued"


def listing(messages: list[StoredMessage], total: int, query: dict[str, list[str]]) -> bytes:
    start = max(int(query.get("start", ["0"])[0] or 0), 0)
    limit = max(int(query.get("limit", [str(DEFAULT_LIMIT)])[0] or DEFAULT_LIMIT), 0)
    page = messages[start:start + limit]
    return json.dumps({
        "total": total, "unread": total, "count": len(page), "messages_count": len(messages),
        "messages_unread": len(messages), "start": start, "tags": [],
        "messages": [m.summary() for m in page],
    }).encode()


def make_handler(mailbox: Mailbox) -> type[BaseHTTPRequestHandler]:
    class ApiHandler(BaseHTTPRequestHandler):
        server_version = "mailpit-standin"

        def log_message(self, format: str, *args: Any) -> None:
            # Polling clients would flood the container log; errors still reach stderr.
            return

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            everything = mailbox.search([])
            if url.path in ("/livez", "/readyz"):
                self._send(200, b"ok", "text/plain")
            elif url.path == "/api/v1/messages":
                self._send(200, listing(everything, len(everything), query))
            elif url.path == "/api/v1/search":
                try:
                    terms = shlex.split(query.get("query", [""])[0])
                except ValueError:
                    self._send(400, b"invalid query", "text/plain")
                    return
                self._send(200, listing(mailbox.search(terms), len(everything), query))
            elif url.path.startswith("/api/v1/message/"):
                found = mailbox.get(url.path.removeprefix("/api/v1/message/"))
                if found is None:
                    self._send(404, b"message not found", "text/plain")
                else:
                    self._send(200, json.dumps(found.detail()).encode())
            else:
                self._send(404, b"not found", "text/plain")

        def do_DELETE(self) -> None:
            if urlsplit(self.path).path == "/api/v1/messages":
                mailbox.clear()
                self._send(200, b"ok", "text/plain")
            else:
                self._send(404, b"not found", "text/plain")

    return ApiHandler


def _bind_address(variable: str, default_port: int) -> tuple[str, int]:
    host, _, port = os.environ.get(variable, f"0.0.0.0:{default_port}").rpartition(":")
    return host or "0.0.0.0", int(port)


async def start(mailbox: Mailbox, smtp_address: tuple[str, int],
                http_address: tuple[str, int]) -> tuple[asyncio.Server, ThreadingHTTPServer]:
    """Both servers, on the running loop and a thread of their own; port 0 picks a free port."""
    http_server = ThreadingHTTPServer(http_address, make_handler(mailbox))
    threading.Thread(target=http_server.serve_forever, daemon=True).start()
    # A fixed hostname: aiosmtpd would otherwise look up the FQDN, a blocking DNS call.
    smtp_server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(SmtpHandler(mailbox), hostname="mailpit"),
        host=smtp_address[0], port=smtp_address[1])
    return smtp_server, http_server


async def serve() -> None:
    smtp_address = _bind_address("MP_SMTP_BIND_ADDR", 1025)
    http_address = _bind_address("MP_UI_BIND_ADDR", 8025)
    smtp_server, http_server = await start(Mailbox(), smtp_address, http_address)
    print(f"mailpit stand-in: SMTP on {smtp_address[0]}:{smtp_address[1]}, "
          f"HTTP API on {http_address[0]}:{http_address[1]}", flush=True)
    # As PID 1 the process gets no default SIGTERM handling; without this, `docker stop` would
    # wait out its whole grace period.
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stopped.set)
    await stopped.wait()
    smtp_server.close()
    http_server.shutdown()


if __name__ == "__main__":
    asyncio.run(serve())
