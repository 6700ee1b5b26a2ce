"""The development SMTP sink stores each message as .eml and finds the verification code."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from deploy.mail_sink import MailSink, StoredMail
from shared.testing.net import free_port


async def test_a_real_mail_is_stored_and_its_code_reported(tmp_path: Path) -> None:
    received: list[StoredMail] = []
    message = EmailMessage()
    message["From"] = "no-reply@preorder.dev"
    message["To"] = "alice@example.com"
    message["Subject"] = "Your verification code"
    message.set_content("Welcome! Your code is 042917. It expires in 10 minutes.")

    async with MailSink(tmp_path / "mail", port=free_port(), on_mail=received.append) as sink:
        await aiosmtplib.send(message, hostname=sink.host, port=sink.port, start_tls=False)

    assert [(m.recipients, m.code) for m in received] == [(("alice@example.com",), "042917")]
    files = list((tmp_path / "mail").glob("*.eml"))
    assert files == [received[0].path]
    assert "042917" in files[0].read_text()
    assert "alice@example.com" in received[0].describe()
    assert "code 042917" in received[0].describe()


async def test_a_mail_without_a_code_is_still_stored(tmp_path: Path) -> None:
    received: list[StoredMail] = []
    message = EmailMessage()
    message["From"] = "no-reply@preorder.dev"
    message["To"] = "bob@example.com"
    message["Subject"] = "Hello"
    message.set_content("Order 12345678 shipped.")  # eight digits are not a six-digit code

    async with MailSink(tmp_path, port=0, on_mail=received.append) as sink:
        await aiosmtplib.send(message, hostname=sink.host, port=sink.port, start_tls=False)

    assert received[0].code is None
    assert received[0].path.exists()
