"""Reading a verification code back out of a received mail: what the dev sink, the tests and the
load scenario all need, in one place. (user_service sends the mail; it writes the code as six
consecutive digits in the plain-text body.)"""

from __future__ import annotations

import re
from email.message import EmailMessage

CODE_PATTERN = re.compile(r"(?<!\d)(\d{6})(?!\d)")


def plain_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return str(part.get_content()) if part is not None else ""


def read_verification_code(message: EmailMessage) -> str | None:
    """The first six consecutive digits of the plain-text body, or None."""
    match = CODE_PATTERN.search(plain_text(message))
    return match.group(1) if match else None
