"""A development SMTP sink: keeps every message as an .eml file and reports its verification code.

`make run` starts it inside its own event loop unless SMTP_HOST is set. It also runs alone:

    python -m deploy.mail_sink --port 1025 --directory .data/mail
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from shared.verification_code import read_verification_code

_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9@._+-]")


@dataclass(frozen=True)
class StoredMail:
    sender: str
    recipients: tuple[str, ...]
    subject: str
    code: str | None
    path: Path

    def describe(self) -> str:
        code = f"code {self.code}" if self.code else "no code"
        return f"to {', '.join(self.recipients)}: {code}  ({self.subject!r}, {self.path})"


def _print_mail(mail: StoredMail) -> None:
    print(mail.describe(), flush=True)


def _write_file(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


class _StoreHandler:
    """aiosmtpd handler: one .eml file per accepted message."""

    def __init__(self, directory: Path, on_mail: Callable[[StoredMail], None]) -> None:
        self.directory = directory
        self.on_mail = on_mail
        self._sequence = itertools.count(1)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        recipients = tuple(str(r) for r in envelope.rcpt_tos)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        first = _UNSAFE_FILENAME_CHARS.sub("_", recipients[0] if recipients else "nobody")
        path = self.directory / f"{stamp}-{next(self._sequence):04d}-{first}.eml"
        await asyncio.to_thread(_write_file, path, content)
        self.on_mail(StoredMail(
            sender=str(envelope.mail_from),
            recipients=recipients,
            subject=str(message.get("Subject", "")),
            code=read_verification_code(message),
            path=path,
        ))
        return "250 Message accepted for delivery"


class MailSink:
    """An SMTP server on the running event loop; `async with MailSink(...) as sink:`."""

    def __init__(self, directory: Path, *, host: str = "127.0.0.1", port: int = 1025,
                 on_mail: Callable[[StoredMail], None] | None = None) -> None:
        self.directory = directory
        self.host = host
        self.port = port
        self._handler = _StoreHandler(directory, on_mail or _print_mail)
        self._server: asyncio.Server | None = None

    async def start(self) -> MailSink:
        loop = asyncio.get_running_loop()
        self.directory.mkdir(parents=True, exist_ok=True)
        # A fixed hostname: aiosmtpd would otherwise look up the FQDN, a blocking DNS call.
        self._server = await loop.create_server(
            lambda: SMTP(self._handler, hostname="preorder-mail-sink", loop=loop),
            host=self.host, port=self.port,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MailSink:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _serve(host: str, port: int, directory: Path) -> None:
    async with MailSink(directory, host=host, port=port) as sink:
        print(f"mail sink on {sink.host}:{sink.port}, writing to {directory}/", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Development SMTP sink that stores .eml files.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--directory", type=Path, default=Path(".data/mail"))
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.directory))


if __name__ == "__main__":
    main()
