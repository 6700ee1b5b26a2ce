"""The lock files say what pyproject.toml asks for: the runtime lock has every runtime dependency
and no development tool, the dev lock has everything, and both agree on every version."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def pins(lock: str) -> dict[str, str]:
    return {canonicalize_name(name): version
            for name, version in PIN.findall((ROOT / lock).read_text())}


def declared(*, extra: str | None = None) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = (project["optional-dependencies"][extra] if extra
                    else project["dependencies"])
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_the_runtime_lock_has_the_runtime_dependencies_and_no_dev_tool() -> None:
    runtime = pins("requirements.lock")
    assert declared() <= set(runtime)
    # pyyaml is both a dev extra and uvicorn[standard]'s; these are development tools only.
    tools = {"httpx", "aiosmtpd", "pytest", "mypy", "ruff", "locust", "schemathesis", "uv"}
    assert tools <= declared(extra="dev")
    assert not tools & set(runtime), "a development tool would ship in the image"


def test_the_dev_lock_has_everything_at_the_runtime_locks_versions() -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert declared() | declared(extra="dev") <= set(dev)
    assert {name: dev.get(name) for name in runtime} == runtime


def test_every_pin_carries_a_hash() -> None:
    for lock in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / lock).read_text()
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
        unhashed = [block.split()[0] for block in blocks if "==" in block and not HASH.search(block)]
        assert len(blocks) > 10, lock
        assert unhashed == [], lock


def test_runtime_code_imports_no_dev_only_package() -> None:
    # httpx and aiosmtpd are for tests and make run's own tools; an app importing them would
    # fail in the image, which installs the runtime lock only.
    image_code = [p for p in ROOT.glob("*/**/*.py")
                  if p.parts[len(ROOT.parts)] in {"shared", "gateway"} | {
                      d.name for d in ROOT.glob("*_service")}
                  and "tests" not in p.parts and "testing" not in p.parts]
    assert image_code
    offenders = [str(p.relative_to(ROOT)) for p in image_code
                 if re.search(r"^\s*(import|from) (httpx|aiosmtpd)\b", p.read_text(), re.MULTILINE)]
    assert offenders == []
