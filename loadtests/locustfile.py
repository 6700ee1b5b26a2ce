"""A crowd of account users against `make run`: each signs up, reads its code from the
development mail sink's files (.data/mail), verifies, logs in, then reads and edits its
profile and refreshes its tokens.

    make run                                   # in one terminal
    .venv/bin/locust -f loadtests/locustfile.py --headless -u 50 -r 10 --run-time 60s \
        --host http://127.0.0.1:8000

Only loopback hosts are accepted, and --run-time bounds every run.
"""

from __future__ import annotations

import time
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from locust import HttpUser, between, events, task

from shared.verification_code import read_verification_code

MAIL_DIR = Path(__file__).resolve().parent.parent / ".data" / "mail"
PASSWORD = "correct horse battery staple"


def refuse_remote_hosts(environment: Any, **_: Any) -> None:
    host = urlsplit(environment.host or "").hostname
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise SystemExit(f"load is only ever sent to loopback, not {host!r}")


events.test_start.add_listener(refuse_remote_hosts)  # type: ignore[no-untyped-call]


def wait_for_code(email: str, timeout: float = 15.0) -> str:
    """make run's sink names each file after its recipient."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(MAIL_DIR.glob(f"*{email}.eml"), reverse=True):
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            if isinstance(message, EmailMessage) and (code := read_verification_code(message)):
                return code
        time.sleep(0.2)
    raise RuntimeError(f"no verification mail for {email} in {MAIL_DIR}")


class AccountUser(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.email = f"locust-{uuid.uuid4().hex[:12]}@example.com"
        self.client.post("/api/v1/auth/signup", name="/auth/signup",
                         json={"email": self.email, "password": PASSWORD, "name": "Locust"})
        code = wait_for_code(self.email)
        self.client.post("/api/v1/auth/verify-email", name="/auth/verify-email",
                         json={"email": self.email, "code": code})
        self.log_in()

    def log_in(self) -> None:
        tokens = self.client.post("/api/v1/auth/login", name="/auth/login",
                                  json={"email": self.email, "password": PASSWORD}).json()
        self.access_token = tokens["access_token"]
        self.refresh_token = tokens["refresh_token"]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    @task(10)
    def read_profile(self) -> None:
        self.client.get("/api/v1/users/me", headers=self.auth, name="/users/me")

    @task(2)
    def edit_profile(self) -> None:
        self.client.patch("/api/v1/users/me", headers=self.auth, name="/users/me",
                          json={"greeting": f"hello {uuid.uuid4().hex[:6]}"})

    @task(1)
    def refresh(self) -> None:
        response = self.client.post("/api/v1/auth/refresh", name="/auth/refresh",
                                    json={"refresh_token": self.refresh_token})
        tokens = response.json()
        self.access_token = tokens["access_token"]
        self.refresh_token = tokens["refresh_token"]
