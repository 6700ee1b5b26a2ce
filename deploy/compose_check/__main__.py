"""`python -m deploy.compose_check` (`make compose-check`); see the package's docstring."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from deploy.compose_check.checks import Report, StackChecks, StopChecks
from deploy.compose_check.commands import CheckError
from deploy.compose_check.engine import Apt, Engine, ensure_engine
from deploy.compose_check.images import (
    OPTIONAL_REPOSITORIES,
    REPO_ROOT,
    Image,
    ImageBuilder,
    dockerfile_python_image,
    repository_of,
)
from deploy.compose_check.stack import Stack, gateway_binding, image_override

STATE_DIR = REPO_ROOT / ".data" / "compose-check"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DEVELOPMENT_ENV = REPO_ROOT / "deploy" / "development.env"


@dataclass
class Run:
    """What the setup steps hand to the checks and to the clean-up."""

    engine: Engine | None = None
    stack: Stack | None = None
    config: dict[str, Any] = field(default_factory=dict)
    app_image: str = ""
    # Optional services whose image could not be had: not started (name -> why).
    left_out: dict[str, str] = field(default_factory=dict)


def prepare_engine(run: Run, apt: Apt) -> str:
    run.engine = ensure_engine(apt, STATE_DIR)
    return f"{'; '.join(run.engine.notes)}; compose: `{' '.join(run.engine.compose)}`"


def prepare_images(run: Run, apt: Apt) -> str:
    assert run.engine is not None
    # docker-compose.yml is production by default (every secret required): the check runs the
    # development override, which a developer's .env must not take the place of.
    env_file = DEVELOPMENT_ENV
    host, port = gateway_binding()
    base = Stack(run.engine.compose, [COMPOSE_FILE], env_file, host, port)
    services: dict[str, Any] = base.config()["services"]
    builder = ImageBuilder(apt, STATE_DIR)
    python_official = dockerfile_python_image()
    python = builder.official_or_standin(python_official)
    app = builder.app(python.name)
    run.app_image = app.name
    chosen: dict[str, Image] = {}
    for name, definition in sorted(services.items()):
        if not definition.get("build"):
            official = str(definition["image"])
            try:
                if official not in chosen:
                    chosen[official] = builder.official_or_standin(official)
            except CheckError as error:
                if repository_of(official) not in OPTIONAL_REPOSITORIES:
                    raise
                run.left_out[name] = f"{official}: {error}"
    override = image_override(services, app.name, {o: i.name for o, i in chosen.items()})
    # JSON is YAML.
    override_file = STATE_DIR / "override.yml"
    override_file.write_text(json.dumps(override, indent=2) + "\n")
    run.stack = Stack(run.engine.compose, [COMPOSE_FILE, override_file], env_file, host, port)
    run.config = run.stack.config()
    # Whatever an interrupted earlier run left behind goes first.
    run.stack.run("down", "-v", "--remove-orphans", timeout=180)
    described = [*builder.notes, f"{python_official} -> {python.name} ({python.how})",
                 *(f"{official} -> {image.name} ({image.how})" for official, image in chosen.items()),
                 f"app {app.name} ({app.how})",
                 *(f"{name} left out ({why})" for name, why in run.left_out.items())]
    return "; ".join(described)


def take_down(stack: Stack) -> str:
    stack.run("down", "-v", "--remove-orphans", "--timeout", "20", timeout=300)
    left = stack.leftovers()
    if left:
        raise CheckError(f"left behind: {', '.join(left)}")
    return f"`compose down -v`: no container, volume or network of {stack.project} left"


def check_stack(report: Report, run: Run) -> None:
    assert run.stack is not None
    checks = StackChecks(run.stack, run.config, run.app_image, left_out=set(run.left_out))
    try:
        report.check("every service healthy", checks.all_healthy)
        report.check("gateway ready", checks.gateway_ready)
        report.check("only the gateway is published", checks.only_gateway_published)
        report.check("sign-up mail in Mailpit", checks.sign_up_and_read_mail)
        report.check("verify email", checks.verify_email)
        report.check("seller role granted by the operator command", checks.grant_seller)
        report.check("login", checks.log_in)
        report.check("GET /users/me", checks.users_me)
        report.check("a sale: product, stock, order, payment", checks.sale)
        report.check("Prometheus scrapes every app", checks.prometheus_scrapes_every_app)
        report.check("alert rules loaded", checks.alert_rules_loaded)
        report.check("a sale metric moved after the order", checks.sale_metric_moved)
        if "grafana" in run.left_out:
            report.skipped("Grafana provisioned the dashboard",
                           f"not started ({run.left_out['grafana']}); the dashboard's queries "
                           "are checked against the metric names by "
                           "deploy/tests/test_observability.py")
        else:
            report.check("Grafana provisioned the dashboard", checks.grafana_dashboard)
        report.check("posts, comments, likes", checks.social)
        report.check("logout revokes the token", checks.log_out)
        report.check("signing key generated", checks.signing_key_generated)
        report.check("MySQL users isolated", checks.database_users_isolated)
        report.check("Redis users isolated", checks.redis_users_isolated)
        report.check("non-root", checks.non_root)
        report.check("least privilege", checks.least_privilege)
        report.check("app image holds no dev tools or tests", checks.app_image_lean)
        report.check("restart", checks.restart_everything)
        report.check("accounts survive restart", checks.accounts_kept)
        report.check("tokens survive restart", checks.tokens_kept)
        report.check("orders, stock and posts survive restart", checks.sale_and_posts_kept)
        report.check("Redis keeps data across restart (AOF)", checks.redis_kept)
    finally:
        checks.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Bring docker-compose.yml up on a Docker engine, check it, take it down.",
        epilog=f"Logs: {STATE_DIR.relative_to(REPO_ROOT)}/. COMPOSE_GATEWAY_PORT=[ADDRESS:]PORT "
               "chooses where the gateway is published (default 127.0.0.1:8000, or a free "
               "loopback port when 8000 is taken).")
    parser.parse_args()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    for old_log in STATE_DIR.glob("*.log"):
        old_log.unlink()
    started = time.monotonic()
    report = Report()
    apt = Apt(STATE_DIR / "apt.log")
    run = Run()
    try:
        report.check("engine", lambda: prepare_engine(run, apt))
        report.check("images", lambda: prepare_images(run, apt))
        check_stack(report, run)
    except StopChecks:
        pass
    finally:
        try:
            if (stack := run.stack) is not None:
                if report.failed:
                    stack.save_logs(STATE_DIR / "compose.log")
                    print(f"      container logs: {STATE_DIR / 'compose.log'}", flush=True)
                report.check("down -v", lambda: take_down(stack))
        except StopChecks:
            pass
        finally:
            if run.engine is not None:
                run.engine.stop()
    print(f"compose-check: took {time.monotonic() - started:.0f} s", flush=True)
    # Alone on its line, in the form CI reads as a test count.
    print(f"compose-check: {report.passed} passed, {report.failed} failed", flush=True)
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
