"""A crowd against `make run`:

- account users each sign up, read their code from the development mail sink's files
  (.data/mail), verify, log in, then read and edit their profile and refresh their tokens;
- buyers (when SALE_BUYERS and SALE_PRODUCT_ID are given) look at the product's stock, order
  one unit, then pay (4 in 5, with the always-succeeding test card) or walk away and let the
  order expire.

    make run                                   # in one terminal
    .venv/bin/locust -f loadtests/locustfile.py --headless -u 50 -r 10 --run-time 60s \
        --host http://127.0.0.1:8000

    # buyers: accounts with tokens made by user_service's operator command, and a product
    USER_JWT_KEY_DIR=.data/keys .venv/bin/python -m user_service.bulk_accounts --count 500 \
        --output .data/buyers.jsonl
    SALE_BUYERS=.data/buyers.jsonl SALE_PRODUCT_ID=<id> .venv/bin/locust -f \
        loadtests/locustfile.py BuyerUser --headless -u 200 -r 50 --run-time 60s \
        --host http://127.0.0.1:8000

Only loopback hosts are accepted, and --run-time bounds every run.
"""

from __future__ import annotations

import itertools
import json
import os
import random
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


def _buyers() -> itertools.cycle[dict[str, Any]] | None:
    path = os.environ.get("SALE_BUYERS")
    if not path:
        return None
    lines = Path(path).read_text().splitlines()
    return itertools.cycle([json.loads(line) for line in lines if line.strip()])


_BUYERS = _buyers()
CARD_OK = "4242424242424242"


class BuyerUser(HttpUser):
    """One buyer of the sale's product: look, order, then pay or walk away."""

    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        product = os.environ.get("SALE_PRODUCT_ID")
        if _BUYERS is None or not product:
            raise SystemExit("BuyerUser needs SALE_BUYERS (a bulk_accounts file) and "
                             "SALE_PRODUCT_ID")
        self.product_id = int(product)
        self.auth = {"Authorization": f"Bearer {next(_BUYERS)['access_token']}"}

    @task
    def buy(self) -> None:
        self.client.get(f"/api/v1/products/{self.product_id}/stock",
                        name="/products/{id}/stock")
        with self.client.post("/api/v1/orders", headers=self.auth, name="/orders",
                              json={"product_id": self.product_id, "quantity": 1},
                              catch_response=True) as ordered:
            if ordered.status_code == 409:
                ordered.success()  # sold out, not open, over the limit: answers, not failures
                return
        if ordered.status_code != 201 or random.random() < 0.2:
            return  # walks away: the order expires and its unit comes back
        self.client.post("/api/v1/payments", headers=self.auth, name="/payments",
                         json={"order_id": ordered.json()["id"], "card_number": CARD_OK})
