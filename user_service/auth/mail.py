"""Outgoing mail over SMTP (aiosmtplib), and the text of the verification mail."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from user_service.settings import Settings


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def send(self, *, to: str, subject: str, body: str) -> None:
        settings = self._settings
        message = EmailMessage()
        message["From"] = settings.mail_from
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=(
                settings.smtp_password.get_secret_value() if settings.smtp_password else None
            ),
            # Explicit, so a relay that merely offers STARTTLS is not upgraded against the config.
            start_tls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
        )

    async def send_verification_code(self, *, to: str, code: str, ttl_seconds: int) -> None:
        minutes = max(1, ttl_seconds // 60)
        await self.send(
            to=to,
            subject="Your verification code",
            body=(
                f"Your verification code is {code}\n\n"
                f"Enter it in the app to confirm your email address. "
                f"It expires in {minutes} minute{'s' if minutes != 1 else ''}.\n\n"
                "If you did not sign up, you can ignore this mail.\n"
            ),
        )
