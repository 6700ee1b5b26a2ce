"""What is checked on the running stack, each as a function that returns one line of detail or
raises CheckError. The HTTP checks go through the gateway's published port only; the rest look
in through `docker exec` and `docker inspect`, so nothing else needs publishing."""

from __future__ import annotations

import json
import secrets
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import yaml
from sqlalchemy.engine import make_url

from deploy.compose_check.commands import CheckError, Deadline, run
from deploy.compose_check.stack import ContainerState, Stack
from shared.redis_acl import SAMPLE_KEYS
from shared.services import GATEWAY, SERVICES
from shared.verification_code import CODE_PATTERN

PROBES = Path(__file__).resolve().parent / "probes"
READY_SECONDS = 300
MAIL_SECONDS = 30
# The gateway answers 503 to signed-in routes until it has fetched the signing keys once, which
# after a restart can take until user-service is back.
KEYS_SECONDS = 60
MAILPIT_API = "http://mailpit:8025/api/v1"
SIGNING_KEY = "/app/.data/keys/signing-key.pem"
APP_UID = 10001
SALE_STOCK = 5
OBSERVABILITY = Path(__file__).resolve().parents[1] / "observability"
PROMETHEUS_API = "http://prometheus:9090/api/v1"
GRAFANA = "http://grafana:3000"
# Prometheus scrapes every 5 s (deploy/observability/prometheus.yml); a few rounds of slack.
SCRAPE_SECONDS = 90


class StopChecks(Exception):
    """A check failed; the ones after it depend on it."""


@dataclass
class Report:
    passed: int = 0
    failed: int = 0

    def check(self, name: str, function: Callable[[], str]) -> None:
        try:
            detail = function()
        except CheckError as error:
            self._fail(name, str(error))
            raise StopChecks from error
        except Exception as error:
            # A bug in the check itself still ends in a FAIL line and a stack taken down.
            self._fail(name, f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
            raise StopChecks from error
        self.passed += 1
        print(f"ok    {name}: {detail}", flush=True)

    def skipped(self, name: str, why: str) -> None:
        """Not checked here, and said so (never counted as passed)."""
        print(f"skip  {name}: {why}", flush=True)

    def _fail(self, name: str, message: str) -> None:
        self.failed += 1
        first, _, rest = message.strip().partition("\n")
        print(f"FAIL  {name}: {first}", flush=True)
        if rest:
            print("      " + rest.replace("\n", "\n      "), flush=True)


@dataclass
class Account:
    email: str
    password: str
    access_tokens: list[str] = field(default_factory=list)


def _problem_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("code", "")) if isinstance(body, dict) else ""


def _expect(response: httpx.Response, status: int, what: str) -> httpx.Response:
    if response.status_code != status:
        raise CheckError(f"{what}: {response.status_code} instead of {status}: "
                         f"{response.text[:300]}")
    return response


def _run_probe(container: str, probe: str, *args: str) -> Any:
    """A program from probes/ run by the container's python; its JSON output, parsed."""
    source = (PROBES / probe).read_text()
    result = run(["docker", "exec", "-i", container, "python", "-", *args], timeout=60,
                 input_text=source)
    try:
        return json.loads(result.stdout)
    except ValueError as error:
        raise CheckError(f"{probe} printed no JSON: {result.stdout[:300]}") from error


class StackChecks:
    """The checks, in order; later ones use what earlier ones made (the account, its tokens)."""

    def __init__(self, stack: Stack, config: dict[str, Any], app_image: str, *,
                 left_out: set[str] | None = None) -> None:
        self.stack = stack
        self.config = config
        self.app_image = app_image
        # Optional services whose image could not be had are not started (the check says so).
        self.services: dict[str, Any] = {name: service for name, service
                                         in config["services"].items()
                                         if name not in (left_out or set())}
        self.http = httpx.Client(base_url=f"http://{stack.gateway_host}:{stack.gateway_port}",
                                 timeout=15)
        self.account = Account(email=f"compose-check-{uuid.uuid4().hex[:12]}@example.com",
                               password=secrets.token_urlsafe(18))
        self.code = ""
        self.revoked_token = ""
        self.redis_marker = f"compose-check:{uuid.uuid4().hex}"
        self.product_id = 0
        self.order_id = 0
        self.post_id = 0

    def close(self) -> None:
        self.http.close()

    # -- the stack is up ------------------------------------------------------------------------

    def all_healthy(self) -> str:
        self.stack.run("up", "-d", "--no-build", *sorted(self.services), timeout=READY_SECONDS)
        states = self.stack.wait_until_ready(sorted(self.services), READY_SECONDS)
        return _describe_states(states)

    def gateway_ready(self) -> str:
        deadline = Deadline(120)
        response = None
        while not deadline.passed():
            try:
                response = self.http.get("/readyz")
                if response.status_code == 200:
                    return f"GET /readyz 200 {json.dumps(response.json(), separators=(',', ':'))}"
            except httpx.HTTPError:
                pass
            time.sleep(2)
        seen = f"{response.status_code} {response.text[:300]}" if response else "no answer"
        raise CheckError(f"GET /readyz did not answer 200 within 120 s: {seen}")

    def only_gateway_published(self) -> str:
        published: dict[str, list[str]] = {}
        for state in self.stack.containers():
            ports = json.loads(run(["docker", "inspect", "--format",
                                    "{{json .NetworkSettings.Ports}}", state.id],
                                   timeout=30).stdout) or {}
            for container_port, bindings in ports.items():
                for binding in bindings or []:
                    published.setdefault(state.service, []).append(
                        f"{binding['HostIp']}:{binding['HostPort']}->{container_port}")
        expected = {"gateway": [f"{self.stack.gateway_host}:{self.stack.gateway_port}->8000/tcp"]}
        if published != expected:
            raise CheckError(f"published on the host: {published}, expected only {expected}")
        return f"only gateway {expected['gateway'][0]}"

    # -- the auth flow, through the published port ---------------------------------------------

    def sign_up_and_read_mail(self) -> str:
        _expect(self.http.post("/api/v1/auth/signup", json={
            "email": self.account.email, "password": self.account.password,
            "name": "Compose Check"}), 201, "POST /api/v1/auth/signup")
        gateway = self.stack.container_of("gateway")
        deadline = Deadline(MAIL_SECONDS)
        while not deadline.passed():
            found = _run_probe(gateway, "fetch.py",
                               f"{MAILPIT_API}/search?query={quote('to:' + self.account.email)}")
            if found.get("messages"):
                message_id = found["messages"][0]["ID"]
                message = _run_probe(gateway, "fetch.py", f"{MAILPIT_API}/message/{message_id}")
                match = CODE_PATTERN.search(str(message.get("Text", "")))
                if match is None:
                    raise CheckError(f"the mail has no six-digit code: {message.get('Text')!r}")
                self.code = match.group(1)
                return (f"201, mail to {self.account.email} read from Mailpit's API "
                        f"(/api/v1/search, /api/v1/message/{message_id}), code found")
            time.sleep(1)
        raise CheckError(f"no mail to {self.account.email} in Mailpit within {MAIL_SECONDS} s")

    def verify_email(self) -> str:
        response = _expect(self.http.post("/api/v1/auth/verify-email", json={
            "email": self.account.email, "code": self.code}), 200, "POST /api/v1/auth/verify-email")
        if response.json() != {"email_verified": True}:
            raise CheckError(f"verify-email answered {response.text[:300]}")
        return '200 {"email_verified": true}'

    def grant_seller(self) -> str:
        """Only a seller lists products; an operator grants the role inside the service's own
        container (never through a public route)."""
        user_service = self.stack.container_of("user-service")
        done = run(["docker", "exec", user_service, "python", "-m", "user_service.roles",
                    "grant", self.account.email, "seller"], timeout=60)
        return done.stdout.strip()

    def log_in(self) -> str:
        token = self._log_in()
        self.account.access_tokens.append(token)
        return "200, a bearer access and refresh token"

    def _log_in(self) -> str:
        response = _expect(self.http.post("/api/v1/auth/login", json={
            "email": self.account.email, "password": self.account.password}),
            200, "POST /api/v1/auth/login")
        body = response.json()
        if body.get("token_type") != "bearer" or not body.get("refresh_token"):
            raise CheckError(f"login answered {sorted(body)}")
        return str(body["access_token"])

    def _me(self, token: str) -> httpx.Response:
        deadline = Deadline(KEYS_SECONDS)
        while True:
            response = self.http.get("/api/v1/users/me",
                                     headers={"Authorization": f"Bearer {token}"})
            if response.status_code != 503 or deadline.passed():
                return response
            time.sleep(2)

    def users_me(self) -> str:
        response = _expect(self._me(self.account.access_tokens[0]), 200, "GET /api/v1/users/me")
        if response.json().get("email") != self.account.email:
            raise CheckError(f"/users/me is someone else: {response.text[:300]}")
        if response.json().get("roles") != ["seller"]:
            raise CheckError(f"/users/me does not show the seller role: {response.text[:300]}")
        return (f"200, {self.account.email}, email_verified "
                f"{response.json().get('email_verified')}, roles [seller]")

    def log_out(self) -> str:
        token = self.account.access_tokens.pop(0)
        _expect(self.http.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}),
                204, "POST /api/v1/auth/logout")
        response = _expect(self._me(token), 401, "GET /api/v1/users/me after logout")
        if _problem_code(response) != "token_revoked":
            raise CheckError(f"after logout: {response.text[:300]}")
        self.revoked_token = token
        return "204, then the same token gets 401 token_revoked"

    # -- the sale and the social side, through the published port ------------------------------

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.account.access_tokens[0]}"}

    def _stock(self) -> dict[str, Any]:
        return dict(_expect(self.http.get(f"/api/v1/products/{self.product_id}/stock"), 200,
                            "GET /api/v1/products/{id}/stock").json())

    def sale(self) -> str:
        product = _expect(self.http.post("/api/v1/products", headers=self._auth(), json={
            "name": "Compose check", "description": "", "price": 1200, "stock": SALE_STOCK,
            "kind": "general"}), 201, "POST /api/v1/products").json()
        self.product_id = int(product["id"])
        before = self._stock()
        if (before["remaining"], before["sale_state"]) != (SALE_STOCK, "open"):
            raise CheckError(f"a new product's stock: {before}")
        order = _expect(self.http.post("/api/v1/orders", headers=self._auth(), json={
            "product_id": self.product_id, "quantity": 2}), 201, "POST /api/v1/orders").json()
        self.order_id = int(order["id"])
        if (order["status"], order["amount"]) != ("pending_payment", 2400):
            raise CheckError(f"the order: {order}")
        payment = _expect(self.http.post("/api/v1/payments", headers=self._auth(), json={
            "order_id": self.order_id, "card_number": "4242424242424242"}), 201,
            "POST /api/v1/payments").json()
        if payment["status"] != "succeeded":
            raise CheckError(f"the test card that always succeeds: {payment}")
        # The payment tells order_service at once, or its outbox worker does within a second.
        deadline = Deadline(10)
        while (status := self._order_status()) != "paid" and not deadline.passed():
            time.sleep(0.5)
        after = self._stock()
        if (status, after["remaining"]) != ("paid", SALE_STOCK - 2):
            raise CheckError(f"after paying: order {status}, stock {after}")
        return (f"product {self.product_id} with stock {SALE_STOCK}; order of 2 paid with the "
                f"test card; order paid, {after['remaining']} left")

    # -- the observability profile ------------------------------------------------------------

    def _prometheus(self, path: str) -> Any:
        """Prometheus's HTTP API, asked from inside the gateway's container (not published)."""
        answer = _run_probe(self.stack.container_of("gateway"), "fetch.py",
                            f"{PROMETHEUS_API}/{path}")
        if not isinstance(answer, dict) or answer.get("status") != "success":
            raise CheckError(f"Prometheus answered {str(answer)[:300]}")
        return answer["data"]

    def prometheus_scrapes_every_app(self) -> str:
        wanted = {GATEWAY.name, *(app.name for app in SERVICES)}
        deadline = Deadline(SCRAPE_SECONDS)
        while True:
            targets = self._prometheus("targets?state=active")["activeTargets"]
            health = {t["labels"]["job"]: t["health"] for t in targets}
            up = {job for job, state in health.items() if state == "up"}
            if wanted <= up:
                return (f"{len(up)} targets up: "
                        f"{', '.join(t['scrapeUrl'] for t in targets if t['health'] == 'up')}")
            if deadline.passed():
                errors = {t["labels"]["job"]: t.get("lastError", "") for t in targets
                          if t["health"] != "up"}
                raise CheckError(f"not scraped: {sorted(wanted - up)}; {errors}")
            time.sleep(3)

    def alert_rules_loaded(self) -> str:
        written = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
        names = {rule["alert"] for group in written["groups"] for rule in group["rules"]}
        groups = self._prometheus("rules?type=alert")["groups"]
        loaded = {rule["name"]: rule.get("health", "") for group in groups
                  for rule in group["rules"]}
        if set(loaded) != names:
            raise CheckError(f"loaded {sorted(loaded)}, alerts.yml has {sorted(names)}")
        broken = {name: health for name, health in loaded.items() if health not in ("ok", "unknown")}
        if broken:
            raise CheckError(f"rules failing to evaluate: {broken}")
        return f"{len(loaded)} alert rules loaded: {', '.join(sorted(loaded))}"

    def sale_metric_moved(self) -> str:
        query = quote('sum(preorder_order_decisions_total{outcome="created"})')
        sold = quote(f'max(preorder_stock_sold_units{{product="{self.product_id}"}})')
        deadline = Deadline(SCRAPE_SECONDS)
        while True:
            created = self._prometheus(f"query?query={query}")["result"]
            units = self._prometheus(f"query?query={sold}")["result"]
            created_value = float(created[0]["value"][1]) if created else 0.0
            sold_value = float(units[0]["value"][1]) if units else 0.0
            if created_value >= 1 and sold_value == 2:
                return (f"preorder_order_decisions_total{{outcome=\"created\"}} = "
                        f"{created_value:g}; preorder_stock_sold_units of product "
                        f"{self.product_id} = {sold_value:g}")
            if deadline.passed():
                raise CheckError(f"after the sale's order: created {created}, sold {units}")
            time.sleep(3)

    def grafana_dashboard(self) -> str:
        password = _env_file_value(self.stack.env_file, "GRAFANA_ADMIN_PASSWORD") or "admin"
        found = _run_probe(self.stack.container_of("gateway"), "grafana_dashboard.py",
                           GRAFANA, password, "preorder-sale")
        return (f"dashboard {found['title']!r} ({found['panels']} panels) provisioned, data "
                f"source {found['datasource']!r}")

    def _order_status(self) -> str:
        response = _expect(self.http.get(f"/api/v1/orders/{self.order_id}", headers=self._auth()),
                           200, "GET /api/v1/orders/{id}")
        return str(response.json()["status"])

    def social(self) -> str:
        post = _expect(self.http.post("/api/v1/posts", headers=self._auth(), json={
            "content": "compose check"}), 201, "POST /api/v1/posts").json()
        self.post_id = int(post["id"])
        _expect(self.http.post(f"/api/v1/posts/{self.post_id}/comments", headers=self._auth(),
                               json={"content": "a comment"}), 201, "POST .../comments")
        _expect(self.http.put(f"/api/v1/posts/{self.post_id}/like", headers=self._auth()), 204,
                "PUT /api/v1/posts/{id}/like")
        counts = self._post_counts()
        if counts != (1, 1):
            raise CheckError(f"the post's (like_count, comment_count): {counts}")
        return f"post {self.post_id}, a comment and a like: like_count 1, comment_count 1"

    def _post_counts(self) -> tuple[int, int]:
        body = _expect(self.http.get(f"/api/v1/posts/{self.post_id}", headers=self._auth()), 200,
                       "GET /api/v1/posts/{id}").json()
        return int(body["like_count"]), int(body["comment_count"])

    # -- what the containers hold ---------------------------------------------------------------

    def database_users_isolated(self) -> str:
        # The runtime user (X_DATABASE_URL) and the migration user (X_MIGRATION_DATABASE_URL).
        urls = []
        for service, definition in self.services.items():
            for variable, value in (definition.get("environment") or {}).items():
                if variable.endswith("_DATABASE_URL") and value:
                    urls.append((service, variable, make_url(str(value))))
        if not urls:
            raise CheckError("no service has a *_DATABASE_URL")
        schemas = {url.database for _, _, url in urls}
        pairs = []
        for service, variable, url in sorted(urls, key=lambda found: found[:2]):
            others = sorted(str(s) for s in schemas - {url.database})
            found = _run_probe(self.stack.container_of(service), "database_access.py",
                               variable, *others)
            visible = set(found["visible"]) - {"information_schema"}
            reachable = [schema for schema, denied in found["denied"].items() if not denied]
            if visible != {url.database} or reachable:
                raise CheckError(f"{service}'s MySQL user {url.username} sees {sorted(visible)} "
                                 f"and reaches {reachable}; it should reach {url.database} only")
            migration = variable.endswith("_MIGRATION_DATABASE_URL")
            if found["ddl"] != migration:
                raise CheckError(f"{service}'s MySQL user {url.username} "
                                 f"{'cannot' if migration else 'can'} change its schema")
            pairs.append(f"{url.username}->{url.database}{' (DDL)' if migration else ''}")
        return (f"{len(pairs)} users, each reaches its own schema and no other, only the "
                f"migration users change it: {', '.join(pairs)}")

    def redis_users_isolated(self) -> str:
        """Each app's Redis user (its *_REDIS_URL) reads its own keys and is refused another
        app's (shared/redis_acl.py), asked from inside the Redis container."""
        redis = self.stack.container_of("redis")
        users: dict[str, tuple[str, str]] = {}
        for definition in self.services.values():
            for variable, value in (definition.get("environment") or {}).items():
                if variable.endswith("_REDIS_URL") and value:
                    url = urlsplit(str(value))
                    app = variable.removesuffix("_REDIS_URL").lower()
                    users[app] = (unquote(url.username or ""), unquote(url.password or ""))
        if set(users) != set(SAMPLE_KEYS):
            raise CheckError(f"Redis URLs for {sorted(users)}, expected {sorted(SAMPLE_KEYS)}")

        def ask(app: str, key: str) -> str:
            username, password = users[app]
            result = run(["docker", "exec", "-e", f"REDISCLI_AUTH={password}", redis,
                          "redis-cli", "--user", username, "GET", key], timeout=30, check=False)
            return (result.stdout + result.stderr).strip()

        refused = 0
        for app in users:
            if "NOPERM" in ask(app, SAMPLE_KEYS[app]):
                raise CheckError(f"{app}'s Redis user {users[app][0]} cannot read its own keys")
            for other, key in SAMPLE_KEYS.items():
                if other != app:
                    if "NOPERM" not in ask(app, key):
                        raise CheckError(f"{app}'s Redis user reads {other}'s key {key}")
                    refused += 1
        return (f"{len(users)} Redis users, each reads its own keys; {refused} reads of another "
                "app's keys refused (NOPERM)")

    def signing_key_generated(self) -> str:
        user_service = self.stack.container_of("user-service")
        env = run(["docker", "exec", user_service, "env"], timeout=30).stdout
        if any(line.startswith("USER_JWT_PRIVATE_KEY=") for line in env.splitlines()):
            raise CheckError("USER_JWT_PRIVATE_KEY is set: the generated key is not what is used")
        listing = run(["docker", "exec", user_service, "stat", "-c", "%u %a", SIGNING_KEY],
                      timeout=30, check=False)
        if listing.returncode != 0 or listing.stdout.split() != [str(APP_UID), "600"]:
            raise CheckError(f"{SIGNING_KEY}: {listing.stdout.strip() or listing.stderr.strip()}")
        mounts = json.loads(run(["docker", "inspect", "--format", "{{json .Mounts}}", user_service],
                                timeout=30).stdout)
        volume = next((m for m in mounts if m.get("Destination") == str(Path(SIGNING_KEY).parent)),
                      None)
        if volume is None or volume.get("Type") != "volume":
            raise CheckError(f"{Path(SIGNING_KEY).parent} is not a named volume: {mounts}")
        return (f"no USER_JWT_PRIVATE_KEY; user-service generated {SIGNING_KEY} "
                f"(uid {APP_UID}, mode 600) in volume {volume['Name']}")

    def non_root(self) -> str:
        states = self.stack.containers()
        uids: dict[str, set[str]] = {}
        for state in states:
            table = run(["docker", "top", state.id, "-eo", "pid,uid,comm"], timeout=30).stdout
            for line in table.splitlines()[1:]:
                _pid, uid, command = line.split(None, 2)
                uids.setdefault(state.service, set()).add(uid)
                if uid == "0":
                    raise CheckError(f"{state.service} runs {command} as root")
        user = run(["docker", "image", "inspect", "--format", "{{.Config.User}}", self.app_image],
                   timeout=30).stdout.strip()
        if user.split(":")[0] in ("", "root", "0"):
            raise CheckError(f"the app image's USER is {user!r}")
        return (f"every process in {len(states)} containers runs as non-root "
                f"(app image USER {user})")

    def least_privilege(self) -> str:
        """The app containers: no capability, none to gain, a read-only root filesystem."""
        apps = [state for state in self.stack.containers()
                if self.services[state.service].get("build")]
        for state in apps:
            host = json.loads(run(["docker", "inspect", "--format", "{{json .HostConfig}}",
                                   state.id], timeout=30).stdout)
            drops = [str(cap).upper() for cap in host.get("CapDrop") or []]
            if drops not in (["ALL"], ["CAP_ALL"]) or not host.get("ReadonlyRootfs") or not any(
                    "no-new-privileges" in str(opt) for opt in host.get("SecurityOpt") or []):
                raise CheckError(f"{state.service}: CapDrop {host.get('CapDrop')}, ReadonlyRootfs "
                                 f"{host.get('ReadonlyRootfs')}, SecurityOpt "
                                 f"{host.get('SecurityOpt')}")
            written = run(["docker", "exec", state.id, "sh", "-c", "touch /app/x 2>&1 || true"],
                          timeout=30).stdout
            if "Read-only file system" not in written:
                raise CheckError(f"{state.service}: the root filesystem took a write ({written!r})")
        return (f"{len(apps)} app containers: cap_drop ALL, no-new-privileges, read-only root "
                "filesystem (a write is refused)")

    def app_image_lean(self) -> str:
        packages = sorted({"shared", "deploy", *(
            str(definition["command"][0]) for definition in self.services.values()
            if definition.get("build") and definition.get("command"))})
        source = (PROBES / "image_contents.py").read_text()
        result = run(["docker", "run", "--rm", "-i", "--network", "none", "--entrypoint", "python",
                      self.app_image, "-", *packages], timeout=120, input_text=source)
        found = json.loads(result.stdout)
        problems = {key: found[key] for key in ("modules", "programs", "tests", "build_ca")
                    if found[key]}
        if problems:
            raise CheckError(f"the app image holds {problems}")
        return ("no pytest/mypy/ruff/locust, no compiler, make or git, no tests, load tests or "
                "development tools of ours, no copy of the build's CA bundle")

    # -- restarts keep the data -----------------------------------------------------------------

    def restart_everything(self) -> str:
        # Made before the restart, checked after it.
        self.account.access_tokens.append(self._log_in())
        redis = self.stack.container_of("redis")
        run(["docker", "exec", redis, "redis-cli", "SET", self.redis_marker, "kept"], timeout=30)
        started = time.monotonic()
        self.stack.run("restart", timeout=READY_SECONDS)
        states = self.stack.wait_until_ready(sorted(self.services), READY_SECONDS)
        self.gateway_ready()
        return (f"`compose restart` of all {len(states)} containers; ready again in "
                f"{time.monotonic() - started:.0f} s")

    def accounts_kept(self) -> str:
        self._log_in()
        return f"{self.account.email} still logs in (MySQL volume kept)"

    def tokens_kept(self) -> str:
        _expect(self._me(self.account.access_tokens[-1]), 200,
                "GET /api/v1/users/me with a token from before the restart")
        response = _expect(self._me(self.revoked_token), 401,
                           "GET /api/v1/users/me with the logged-out token")
        if _problem_code(response) != "token_revoked":
            raise CheckError(f"the logged-out token after the restart: {response.text[:300]}")
        return ("a token issued before the restart is still accepted (signing key kept in its "
                "volume); the logged-out one is still token_revoked")

    def sale_and_posts_kept(self) -> str:
        status = self._order_status()
        stock = self._stock()
        counts = self._post_counts()
        if (status, stock["remaining"], counts) != ("paid", SALE_STOCK - 2, (1, 1)):
            raise CheckError(f"after the restart: order {status}, stock {stock}, post {counts}")
        return (f"order {self.order_id} still paid, product {self.product_id} still has "
                f"{stock['remaining']} left (live stock rebuilt or kept), the post's counts kept")

    def redis_kept(self) -> str:
        redis = self.stack.container_of("redis")
        value = run(["docker", "exec", redis, "redis-cli", "GET", self.redis_marker],
                    timeout=30).stdout.strip()
        info = run(["docker", "exec", redis, "redis-cli", "INFO", "persistence"],
                   timeout=30).stdout
        if value != "kept":
            raise CheckError(f"{self.redis_marker} is {value!r} after the restart")
        if "aof_enabled:1" not in info.split():
            raise CheckError("Redis runs without the append-only file")
        run(["docker", "exec", redis, "redis-cli", "DEL", self.redis_marker], timeout=30)
        return "a key written before the restart is there after it; appendonly on (aof_enabled:1)"


def _env_file_value(path: Path, name: str) -> str:
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == name:
            return value.strip()
    return ""


def _describe_states(states: list[ContainerState]) -> str:
    healthy = [s.service for s in states if s.health == "healthy"]
    running = [s.service for s in states if not s.health]
    text = f"{len(states)} containers: {len(healthy)} healthy ({', '.join(healthy)})"
    if running:
        text += f", running without a health check: {', '.join(running)}"
    return text
