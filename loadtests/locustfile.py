"""The sale opening as a crowd sees it, for Locust (FastHttpUser, its fast client):

- BuyerUser: a signed-in buyer with the product page open. It waits for the product's
  sale_opens_at and orders one unit at that second (`--double-tap`, 5%, send two orders at
  once, which limit_per_user must refuse one of); of those who get an order, `--walk-away`
  (20%) leave it unpaid to expire, the rest pay, `--declined` (20%) of them with the test card
  that is always declined (4000000000000002, see API.md), the others with 4242424242424242.
  Either way its units must come back. Each buyer runs once, then tells the master it is done;
  when all are, the master ends the run (`--quit-when-bought`).
- BrowserUser: reads the product and its live stock, and the list of pre-orders, around the
  opening, signed out.
- SocialUser: a signed-in user beside the sale: follows a few others, reads the feed and the
  activity stream, posts, comments and likes.
- AccountUser (0 by default, `--account-users N`): signs up, reads its code from `make run`'s
  mail sink files (.data/mail), verifies, logs in, reads and edits its profile, refreshes.

The buyers, social users and the product come from `python -m loadtests.seed` (`--seed-file`).
`-u` should be buyers + browsers + social + account users: each class spawns exactly its count.
`make load` runs all of this and the checker; by hand, against any gateway:

    .venv/bin/locust -f loadtests/locustfile.py --headless --seed-file .data/loadtests/seed.json \\
        --buyers 2000 --browsers 100 --social 50 -u 2150 -r 500 --run-time 10m \\
        --host http://gateway.example:8000

Any --host the tester names is accepted; `make load` itself only ever targets loopback.
The master collects every order and payment answer (time, status, problem code) and the count
of every answer by route, status and code of the other classes into `--outcomes-file`.
"""

from __future__ import annotations

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
from locust import FastHttpUser, between, constant, events, task
from locust.exception import StopUser

from loadtests.seed_file import SaleSeed, account_of_worker
from shared.verification_code import read_verification_code

REPO_ROOT = Path(__file__).resolve().parent.parent
MAIL_DIR = REPO_ROOT / ".data" / "mail"
PASSWORD = "correct horse battery staple"
CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
# Routes whose every answer is kept (time, status, code) rather than only counted.
RECORDED = ("POST /orders", "POST /payments")


def add_arguments(parser: Any, **_: Any) -> None:
    group = parser.add_argument_group("sale opening (loadtests/locustfile.py)")
    group.add_argument("--seed-file", default=str(REPO_ROOT / ".data/loadtests/seed.json"),
                       help="what python -m loadtests.seed wrote (every worker reads its own copy)")
    group.add_argument("--buyers", type=int, default=2000, help="BuyerUsers, one order each")
    group.add_argument("--browsers", type=int, default=100, help="BrowserUsers")
    group.add_argument("--social", type=int, default=50, help="SocialUsers")
    group.add_argument("--account-users", type=int, default=0,
                       help="AccountUsers (need make run's mail sink files)")
    group.add_argument("--double-tap", type=float, default=0.05,
                       help="share of buyers who send two orders at once (limit_per_user)")
    group.add_argument("--walk-away", type=float, default=0.2,
                       help="share of buyers with an order who leave it unpaid")
    group.add_argument("--declined", type=float, default=0.2,
                       help="share of paying buyers whose card is declined")
    group.add_argument("--quit-when-bought", type=float, default=2.0,
                       help="seconds after the last buyer finished that the run ends (<0: never)")
    group.add_argument("--idempotent-retries", type=float, default=0.0,
                       help="seconds a buyer retries an order or payment answered 5xx (or 409 "
                            "idempotency_key_in_use), with the same Idempotency-Key, as a client "
                            "following API.md would (0: one attempt, no key)")
    group.add_argument("--outcomes-file", default="",
                       help="master (or a local run): where the collected answers are written")


# --- Answers: each process counts its own; workers report them to the master ---------------


class Outcomes:
    """Every answer counted by (route, status, problem code); orders and payments also kept
    one by one as [route, status, code, sent (epoch s), latency ms]."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, int, str]] = Counter()
        self.records: list[list[Any]] = []
        self.buyers_done = 0

    def take(self) -> dict[str, Any]:
        """What to send to the master, forgotten here once taken."""
        data = {"counts": [[*key, n] for key, n in self.counts.items()], "records": self.records}
        self.counts = Counter()
        self.records = []
        return data

    def merge(self, data: dict[str, Any]) -> None:
        for route, status, code, n in data.get("counts", ()):
            self.counts[(route, status, code)] += n
        self.records.extend(data.get("records", ()))

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "counts": [[*key, n] for key, n in sorted(self.counts.items())],
            "records": sorted(self.records, key=lambda r: r[3]),
            "buyers_done": self.buyers_done}))


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
    route = f"{request_type} {name}"
    if route in RECORDED:
        return  # the buyer records these itself, with the time it sent them
    OUTCOMES.counts[(route, int(getattr(response, "status_code", 0) or 0),
                     problem_code(response))] += 1


def report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["sale_outcomes"] = OUTCOMES.take()


def collect(client_id: str, data: dict[str, Any], **_: Any) -> None:
    OUTCOMES.merge(data.get("sale_outcomes", {}))


def set_up(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    counts = {BuyerUser: options.buyers, BrowserUser: options.browsers,
              SocialUser: options.social, AccountUser: options.account_users}
    for user_class, count in counts.items():
        user_class.fixed_count = count
    # A class asked for 0 times is left out: the dispatcher would give it users by weight.
    environment.user_classes[:] = [c for c in environment.user_classes if counts.get(c, 1) > 0]
    runner = environment.runner
    if runner is not None and not _is_worker(runner):
        runner.register_message("buyer_done", _buyer_done)


def write_outcomes(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    if options is not None and options.outcomes_file and not _is_worker(environment.runner):
        OUTCOMES.write(Path(options.outcomes_file))


def _is_worker(runner: Any) -> bool:
    return type(runner).__name__ == "WorkerRunner"


def _buyer_done(environment: Any, msg: Any, **_: Any) -> None:
    """On the master (or a local run): one buyer finished; its answers come with the message,
    so none is lost to the last stats report's timing."""
    OUTCOMES.records.extend(msg.data)
    OUTCOMES.buyers_done += 1
    options = environment.parsed_options
    if OUTCOMES.buyers_done == options.buyers and options.quit_when_bought >= 0:
        gevent.spawn_later(options.quit_when_bought, environment.runner.quit)


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


def next_account(environment: Any, role: str) -> dict[str, Any]:
    """This process's next account of `role`: buyers take the seed's first `--buyers`
    accounts, social users the ones after; a worker takes every W-th (W = --expect-workers)
    from its index, so no two workers hand out the same account."""
    seed = sale_seed(environment)
    options = environment.parsed_options
    first, count = (0, options.buyers) if role == "buyer" else (options.buyers, options.social)
    pool = seed.accounts[first:first + count] or seed.accounts
    runner = environment.runner
    workers, index = ((max(1, int(options.expect_workers)), runner.worker_index)
                      if _is_worker(runner) else (1, 0))
    taken = _TAKEN[role]
    _TAKEN[role] += 1
    return account_of_worker(pool, worker=index, workers=workers, taken=taken)


def bearer(account: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {account['access_token']}"}


# --- The users -------------------------------------------------------------------------------


class BuyerUser(FastHttpUser):
    """One order at the opening second, then pay (with either card) or walk away; once."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.seed = sale_seed(self.environment)
        self.auth = bearer(next_account(self.environment, "buyer"))
        self.answers: list[list[Any]] = []
        # The app has been open: the token seen once, a connection made.
        self.client.get("/api/v1/orders?limit=1", headers=self.auth, name="/orders")

    def send(self, route: str, path: str, body: dict[str, Any]) -> Any:
        sent = time.time()
        started = time.perf_counter()
        retry_for = float(self.environment.parsed_options.idempotent_retries)
        headers = self.auth | ({"Idempotency-Key": uuid.uuid4().hex} if retry_for > 0 else {})
        while True:
            with self.client.post(path, json=body, headers=headers, name=path.removeprefix(
                    "/api/v1"), catch_response=True) as response:
                code = problem_code(response)
                status = int(response.status_code or 0)
                if (retry_for > 0 and time.perf_counter() - started < retry_for
                        and (status >= 500 or status == 0 or code == "idempotency_key_in_use")):
                    # Locust's statistics keep the attempt as a failure; the buyer's answer is
                    # what the retries with the same key end in.
                    response.failure(f"{status} {code}: retried with the same Idempotency-Key")
                    delay = min(5.0, float(response.headers.get("Retry-After") or 1))
                else:
                    latency = (time.perf_counter() - started) * 1000
                    if route == "POST /payments" and status == 201:
                        code = str(response.json()["status"])  # succeeded or failed: both 201
                    self.answers.append([route, status, code, sent, latency])
                    if status == 409:
                        response.success()  # sold out, over the limit: answers, not failures
                    return response
            gevent.sleep(delay)

    @task
    def buy(self) -> None:
        try:
            self.order_and_pay()
        except Exception as error:
            # Locust would run the task again: a buyer buys once, so the error is only reported.
            self.environment.events.user_error.fire(user_instance=self, exception=error,
                                                    tb=error.__traceback__)
        finally:
            # Whatever happened, the master hears of it: it ends the run when all have.
            self.environment.runner.send_message("buyer_done", self.answers)
        raise StopUser

    def order_and_pay(self) -> None:
        opens_at = self.seed.opens_at
        # The page is refreshed a moment before the opening (and the connection kept warm:
        # uvicorn closes one idle for 5 s).
        gevent.sleep(max(0.0, opens_at - time.time() - random.uniform(0.5, 3.0)))
        self.client.get(f"/api/v1/products/{self.seed.product_id}/stock",
                        name="/products/{id}/stock")
        gevent.sleep(max(0.0, opens_at - time.time()))
        options = self.environment.parsed_options
        body = {"product_id": self.seed.product_id, "quantity": 1}
        if random.random() < options.double_tap:
            # Two taps, two orders at once, no Idempotency-Key: the limit must refuse one.
            second = gevent.spawn(self.send, "POST /orders", "/api/v1/orders", body)
            answers = [self.send("POST /orders", "/api/v1/orders", body), second.get()]
        else:
            answers = [self.send("POST /orders", "/api/v1/orders", body)]
        # Every order won is seen through, so one the limit should have refused ends up paid
        # (or held) where the checker finds it, not expired out of sight.
        for ordered in answers:
            if ordered.status_code == 201 and random.random() >= options.walk_away:
                card = CARD_DECLINED if random.random() < options.declined else CARD_OK
                gevent.sleep(random.uniform(0.5, 3.0))  # typing the card in
                self.send("POST /payments", "/api/v1/payments",
                          {"order_id": ordered.json()["id"], "card_number": card})


class BrowserUser(FastHttpUser):
    """Signed out, reading the sale's pages."""

    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.product_id = sale_seed(self.environment).product_id

    @task(3)
    def read_stock(self) -> None:
        self.client.get(f"/api/v1/products/{self.product_id}/stock", name="/products/{id}/stock")

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
        me = next_account(environment, "social")
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
