"""The crowd beside a sale's buyers, for Locust (FastHttpUser, its fast client). The buyers
themselves are loadtests/crowd.py's: Locust cannot hold 20,000 of them on two cores.

- BrowserUser: signed out, holds the product's live stream (`GET /products/{id}/live`) as a
  product page does instead of polling its stock, and reads the product and the list of
  pre-orders now and then.
- SocialUser: a signed-in user beside the sale: follows a few others, reads the feed and the
  activity stream, posts, comments and likes.
- AccountUser (0 by default, `--account-users N`): signs up, reads its code from `make run`'s
  mail sink files (.data/mail), verifies, logs in, reads and edits its profile, refreshes.

The social users and the product come from `python -m loadtests.seed` (`--seed-file`); the
seed's first `--buyers` accounts are the crowd's, the social users take the ones after.
`-u` should be browsers + social + account users: each class spawns exactly its count.
`make load` runs this beside the crowd and the checker; by hand, against any gateway:

    .venv/bin/locust -f loadtests/locustfile.py --headless --seed-file .data/loadtests/seed.json \\
        --buyers 2000 --browsers 100 --social 50 -u 150 -r 50 --run-time 10m \\
        --host http://gateway.example:8000

Any --host the tester names is accepted; `make load` itself only ever targets loopback.
The master counts every answer by route, status and code into `--outcomes-file`.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, between, events, task

from loadtests.seed_file import SaleSeed, account_of_worker
from shared.verification_code import read_verification_code

REPO_ROOT = Path(__file__).resolve().parent.parent
MAIL_DIR = REPO_ROOT / ".data" / "mail"
PASSWORD = "correct horse battery staple"
LIVE = "/products/{id}/live"


def add_arguments(parser: Any, **_: Any) -> None:
    group = parser.add_argument_group("sale opening (loadtests/locustfile.py)")
    group.add_argument("--seed-file", default=str(REPO_ROOT / ".data/loadtests/seed.json"),
                       help="what python -m loadtests.seed wrote (every worker reads its own copy)")
    group.add_argument("--buyers", type=int, default=2000,
                       help="the seed's first accounts, the crowd's (loadtests/crowd.py)")
    group.add_argument("--browsers", type=int, default=100, help="BrowserUsers")
    group.add_argument("--social", type=int, default=50, help="SocialUsers")
    group.add_argument("--account-users", type=int, default=0,
                       help="AccountUsers (need make run's mail sink files)")
    group.add_argument("--outcomes-file", default="",
                       help="master (or a local run): where the counted answers are written")


# --- Answers: each process counts its own; workers report them to the master ---------------


class Outcomes:
    """Every answer counted by (route, status, problem code)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, int, str]] = Counter()

    def take(self) -> dict[str, Any]:
        """What to send to the master, forgotten here once taken."""
        data = {"counts": [[*key, n] for key, n in self.counts.items()]}
        self.counts = Counter()
        return data

    def merge(self, data: dict[str, Any]) -> None:
        for route, status, code, n in data.get("counts", ()):
            self.counts[(route, status, code)] += n

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "counts": [[*key, n] for key, n in sorted(self.counts.items())]}))


OUTCOMES = Outcomes()


def problem_code(response: Any) -> str:
    """The problem document's `code` of a refusal ('' for a success, the exception's name when
    nothing answered)."""
    status = int(getattr(response, "status_code", 0) or 0)
    if status == 0:
        error = getattr(response, "error", None)
        return type(error).__name__ if error is not None else "no_answer"
    if status < 400:
        return ""
    try:
        body = json.loads(response.content or b"{}")
    except ValueError:
        return "not_json"
    return str(body.get("code", "")) if isinstance(body, dict) else ""


def count_answer(request_type: str, name: str, response: Any = None, **_: Any) -> None:
    status = int(getattr(response, "status_code", 0) or 0)
    # A live stream's body is still arriving: its status is the answer.
    code = "" if name == LIVE and status == 200 else problem_code(response)
    OUTCOMES.counts[(f"{request_type} {name}", status, code)] += 1


def report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["sale_outcomes"] = OUTCOMES.take()


def collect(client_id: str, data: dict[str, Any], **_: Any) -> None:
    OUTCOMES.merge(data.get("sale_outcomes", {}))


def set_up(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    counts = {BrowserUser: options.browsers, SocialUser: options.social,
              AccountUser: options.account_users}
    for user_class, count in counts.items():
        user_class.fixed_count = count
    # A class asked for 0 times is left out: the dispatcher would give it users by weight.
    environment.user_classes[:] = [c for c in environment.user_classes if counts.get(c, 1) > 0]


def write_outcomes(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    if options is not None and options.outcomes_file and not _is_worker(environment.runner):
        OUTCOMES.write(Path(options.outcomes_file))


def _is_worker(runner: Any) -> bool:
    return type(runner).__name__ == "WorkerRunner"


events.init_command_line_parser.add_listener(add_arguments)  # type: ignore[no-untyped-call]
events.request.add_listener(count_answer)  # type: ignore[no-untyped-call]
events.report_to_master.add_listener(report)  # type: ignore[no-untyped-call]
events.worker_report.add_listener(collect)  # type: ignore[no-untyped-call]
events.init.add_listener(set_up)  # type: ignore[no-untyped-call]
events.quitting.add_listener(write_outcomes)  # type: ignore[no-untyped-call]


# --- The seed: read once per process ---------------------------------------------------------

_SEED: SaleSeed | None = None
_TAKEN: Counter[str] = Counter()


def sale_seed(environment: Any) -> SaleSeed:
    global _SEED
    if _SEED is None:
        _SEED = SaleSeed.read(Path(environment.parsed_options.seed_file))
    return _SEED


def next_account(environment: Any) -> dict[str, Any]:
    """This process's next social account: the seed's accounts after the crowd's `--buyers`;
    a worker takes every W-th (W = --expect-workers) from its index, so no two workers hand out
    the same account."""
    seed = sale_seed(environment)
    options = environment.parsed_options
    pool = seed.accounts[options.buyers:options.buyers + options.social] or seed.accounts
    runner = environment.runner
    workers, index = ((max(1, int(options.expect_workers)), runner.worker_index)
                      if _is_worker(runner) else (1, 0))
    taken = _TAKEN["social"]
    _TAKEN["social"] += 1
    return account_of_worker(pool, worker=index, workers=workers, taken=taken)


def bearer(account: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {account['access_token']}"}


# --- The users -------------------------------------------------------------------------------


class BrowserUser(FastHttpUser):
    """Signed out, on the sale's page: its live stream open, the product and the list read now
    and then."""

    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.product_id = sale_seed(self.environment).product_id
        self.watching = gevent.spawn(self.watch_live)

    def on_stop(self) -> None:
        self.watching.kill(block=False)

    def watch_live(self) -> None:
        """The stream held open; opened again (a second later) when it ends, as a page does."""
        while True:
            # A failed stream's answer is counted by the request event; the page tries again.
            with contextlib.suppress(Exception):
                for _line in self.client.iter_lines(f"/api/v1/products/{self.product_id}/live",
                                                    name=LIVE):
                    pass
            gevent.sleep(1.0)

    @task(2)
    def read_product(self) -> None:
        self.client.get(f"/api/v1/products/{self.product_id}", name="/products/{id}")

    @task(1)
    def list_preorders(self) -> None:
        self.client.get("/api/v1/products?kind=preorder&limit=20", name="/products")


class SocialUser(FastHttpUser):
    """Ordinary traffic beside the sale: feed, activities, posts, comments, likes."""

    wait_time = between(1.0, 3.0)

    def on_start(self) -> None:
        environment = self.environment
        me = next_account(environment)
        self.auth = bearer(me)
        self.post_ids: list[int] = []
        seed = sale_seed(environment)
        options = environment.parsed_options
        others = [account for account in
                  seed.accounts[options.buyers:options.buyers + options.social] or seed.accounts
                  if account["user_id"] != me["user_id"]]
        for other in random.sample(others, min(5, len(others))):
            self.client.put(f"/api/v1/follows/{other['user_id']}", headers=self.auth,
                            name="/follows/{user_id}")
        self.write_post()

    @task(5)
    def read_feed(self) -> None:
        response = self.client.get("/api/v1/feed?limit=20", headers=self.auth, name="/feed")
        if response.status_code == 200:
            seen = [int(post["id"]) for post in response.json()["items"]]
            self.post_ids = (seen + self.post_ids)[:50]

    @task(1)
    def read_activities(self) -> None:
        self.client.get("/api/v1/activities?limit=20", headers=self.auth, name="/activities")

    @task(2)
    def write_post(self) -> None:
        response = self.client.post("/api/v1/posts", headers=self.auth, name="/posts",
                                    json={"content": f"waiting for the drop {uuid.uuid4().hex[:8]}"})
        if response.status_code == 201:
            self.post_ids.insert(0, int(response.json()["id"]))

    @task(2)
    def comment(self) -> None:
        if self.post_ids:
            self.client.post(f"/api/v1/posts/{random.choice(self.post_ids)}/comments",
                             headers=self.auth, name="/posts/{id}/comments",
                             json={"content": "same here"})

    @task(3)
    def like(self) -> None:
        if self.post_ids:
            self.client.put(f"/api/v1/posts/{random.choice(self.post_ids)}/like",
                            headers=self.auth, name="/posts/{id}/like")


# --- Accounts through sign-up and the mail sink (against make run) --------------------------


def wait_for_code(email: str, timeout: float = 15.0) -> str:
    """make run's sink names each file after its recipient."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in _mail_for(email):
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            if isinstance(message, EmailMessage) and (code := read_verification_code(message)):
                return code
        gevent.sleep(0.2)
    raise RuntimeError(f"no verification mail for {email} in {MAIL_DIR}")


def _mail_for(email: str) -> Iterator[Path]:
    return iter(sorted(MAIL_DIR.glob(f"*{email}.eml"), reverse=True))


class AccountUser(FastHttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.email = f"locust-{uuid.uuid4().hex[:12]}@example.com"
        self.client.post("/api/v1/auth/signup", name="/auth/signup",
                         json={"email": self.email, "password": PASSWORD, "name": "Locust"})
        code = wait_for_code(self.email)
        self.client.post("/api/v1/auth/verify-email", name="/auth/verify-email",
                         json={"email": self.email, "code": code})
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
