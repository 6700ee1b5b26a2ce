"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for tests to read."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from shared.testing.net import free_port
from shared.verification_code import plain_text, read_verification_code


@dataclass(frozen=True)
class ReceivedMail:
    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def text(self) -> str:
        return plain_text(self.message)

    @property
    def code(self) -> str:
        code = read_verification_code(self.message)
        if code is None:
            raise AssertionError(f"no six-digit code in mail: {self.text!r}")
        return code


class _Collector:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.sink.add(ReceivedMail(envelope.mail_from, tuple(envelope.rcpt_tos), message))
        return "250 OK"


class MailSink:
    """Runs in its own thread, so it serves whatever event loop the code under test uses."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._mails: list[ReceivedMail] = []
        self.controller = Controller(_Collector(self), hostname=host, port=port or free_port())

    @property
    def host(self) -> str:
        return str(self.controller.hostname)

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def start(self) -> MailSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def add(self, mail: ReceivedMail) -> None:
        with self._lock:
            self._mails.append(mail)

    def mails_to(self, address: str) -> list[ReceivedMail]:
        address = address.lower()
        with self._lock:
            return [m for m in self._mails if address in (r.lower() for r in m.recipients)]

    async def wait_for(self, address: str, *, count: int = 1, timeout: float = 10.0) -> ReceivedMail:
        """The newest mail to `address` once at least `count` have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            mails = self.mails_to(address)
            if len(mails) >= count:
                return mails[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} mail(s) to {address}, got {len(mails)}")
            await asyncio.sleep(0.02)
