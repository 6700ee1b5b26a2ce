"""The images the stack runs on: the official ones where they can be had, local stand-ins where
no registry answers, and the app image built from deploy/Dockerfile.

Everything built is tagged with a hash of what went into it (the base image's id and the files),
so a later run finds it and builds nothing; older tags of the same image are removed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from deploy.compose_check.commands import CheckError, run, run_logged
from deploy.compose_check.engine import Apt

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
STANDINS_DIR = Path(__file__).resolve().parent / "standins"

BASE_IMAGE = "preorder-standin/debian:bookworm-minbase"
APP_REPOSITORY = "preorder-app"
# The official image (by repository) that each directory under standins/ replaces.
STANDIN_FOR_REPOSITORY = {
    "python": "python",
    "mysql": "mysql",
    "redis": "redis",
    "axllent/mailpit": "mailpit",
    "prom/prometheus": "prometheus",
}
# Official images the check may run without (the `observability` profile's Grafana: Debian has
# no package to make a stand-in of). Left out when they cannot be had; the dashboard they would
# load is checked against the metric names by deploy/tests/test_observability.py instead.
OPTIONAL_REPOSITORIES = frozenset({"grafana/grafana"})
# Where pip inside the build finds the CA bundle it must trust (deploy/Dockerfile reads it).
BUILD_CA_NAME = ".pip-ca.pem"

PULL_SECONDS = 300
DEBOOTSTRAP_SECONDS = 1200
BUILD_SECONDS = 1800


@dataclass(frozen=True)
class Image:
    name: str
    how: str  # for the report: "present", "pulled", "cached stand-in", "built in 12 s" ...


def repository_of(image: str) -> str:
    """`mysql:8.4` -> `mysql`, `axllent/mailpit` -> `axllent/mailpit` (a registry port stays)."""
    last = image.rsplit("/", 1)[-1]
    return image[: len(image) - len(last)] + last.split(":", 1)[0].split("@", 1)[0]


def image_id(name: str) -> str | None:
    result = run(["docker", "image", "inspect", "--format", "{{.Id}}", name], timeout=30,
                 check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def dockerfile_python_image() -> str:
    """The default of deploy/Dockerfile's PYTHON_IMAGE build argument."""
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    if match is None:
        raise CheckError("deploy/Dockerfile has no `ARG PYTHON_IMAGE=...` default")
    return match.group(1)


def content_hash(prefix: str, root: Path, paths: Iterable[Path]) -> str:
    """12 hex digits over `prefix` and each file's path, executable bits and content."""
    digest = hashlib.sha256(f"{prefix}\0".encode())
    for path in sorted(paths):
        relative = path.relative_to(root).as_posix()
        digest.update(f"{relative}\0{path.stat().st_mode & 0o111:o}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def _remove_other_tags(repository: str, keep: str) -> None:
    listed = run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository],
                 timeout=60, check=False)
    stale = [name for name in listed.stdout.split() if name != keep and not name.endswith(":<none>")]
    if stale:
        # An image still used by a container stays; it goes on a later run.
        run(["docker", "image", "rm", *stale], timeout=300, check=False)


class ImageBuilder:
    def __init__(self, apt: Apt, state_dir: Path) -> None:
        self.apt = apt
        self.state_dir = state_dir
        self.log_path = state_dir / "build.log"
        self.notes: list[str] = []

    def official_or_standin(self, official: str) -> Image:
        """The official image if it is here or can be pulled, else its stand-in."""
        if image_id(official) is not None:
            return Image(official, "present")
        try:
            run_logged(["docker", "pull", official], self.log_path, timeout=PULL_SECONDS)
            return Image(official, "pulled")
        except CheckError:
            pass
        standin = STANDIN_FOR_REPOSITORY.get(repository_of(official))
        if standin is None:
            raise CheckError(f"{official} cannot be pulled and has no stand-in under "
                             f"{STANDINS_DIR.relative_to(REPO_ROOT)}/")
        return self.standin(standin)

    def base(self) -> str:
        """A minimal Debian bookworm image made with debootstrap, once."""
        if image_id(BASE_IMAGE) is not None:
            return BASE_IMAGE
        started = time.monotonic()
        if shutil.which("debootstrap") is None:
            self.apt.install("debootstrap")
        if os.geteuid() != 0:
            raise CheckError("building the Debian base image with debootstrap needs root")
        with tempfile.TemporaryDirectory(prefix="compose-check-rootfs-",
                                         ignore_cleanup_errors=True) as directory:
            rootfs = Path(directory) / "rootfs"
            run_logged(["debootstrap", "--variant=minbase", "bookworm", str(rootfs)],
                       self.log_path, timeout=DEBOOTSTRAP_SECONDS)
            # Package lists go stale; every image built on this base fetches its own.
            for leftover in (rootfs / "var" / "lib" / "apt" / "lists").glob("*_*"):
                leftover.unlink()
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."],
                                   stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
            try:
                run_logged(["docker", "import", "-", BASE_IMAGE], self.log_path,
                           timeout=BUILD_SECONDS, stdin_from=tar)
            finally:
                if tar.stdout:
                    tar.stdout.close()
                tar.wait()
        self.notes.append(f"{BASE_IMAGE} made with debootstrap in {time.monotonic() - started:.0f} s")
        return BASE_IMAGE

    def standin(self, name: str) -> Image:
        base = self.base()
        directory = STANDINS_DIR / name
        files = [p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        tag = f"preorder-standin/{name}:{content_hash(str(image_id(base)), directory, files)}"
        if image_id(tag) is not None:
            return Image(tag, "stand-in, cached")
        started = time.monotonic()
        self._build(["--build-arg", f"BASE_IMAGE={base}", "-t", tag, str(directory)])
        _remove_other_tags(f"preorder-standin/{name}", tag)
        return Image(tag, f"stand-in, built in {time.monotonic() - started:.0f} s")

    def app(self, python_image: str) -> Image:
        """deploy/Dockerfile on `python_image`, from the files a fresh clone would have."""
        files = _context_files()
        hashed = content_hash(f"{python_image}\0{image_id(python_image)}", REPO_ROOT, files)
        tag = f"{APP_REPOSITORY}:check-{hashed}"
        if image_id(tag) is not None:
            return Image(tag, "cached")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="compose-check-context-") as directory:
            context = Path(directory)
            for path in files:
                target = context / path.relative_to(REPO_ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
            # The Dockerfile hands it to pip in its build stage only.
            ca_bundle = pip_ca_bundle()
            if ca_bundle is not None:
                shutil.copyfile(ca_bundle, context / BUILD_CA_NAME)
            self._build(["--build-arg", f"PYTHON_IMAGE={python_image}", "-t", tag,
                         "-f", str(context / "deploy" / "Dockerfile"), str(context)])
        _remove_other_tags(APP_REPOSITORY, tag)
        return Image(tag, f"built in {time.monotonic() - started:.0f} s")

    def _build(self, arguments: list[str]) -> None:
        run_logged(["docker", "build", *arguments], self.log_path, timeout=BUILD_SECONDS)


def pip_ca_bundle() -> Path | None:
    """The CA bundle this host's pip trusts, found at run time (never written into a committed
    file): $PIP_CERT, else pip's own `cert` setting (a CI run may not inherit the variable)."""
    named = os.environ.get("PIP_CERT", "").strip()
    if not named:
        # `pip config get` reads one file only; `list` shows every file's settings, lines like
        # global.cert='/path'.
        listed = run([sys.executable, "-m", "pip", "config", "list"], timeout=60, check=False)
        for line in listed.stdout.splitlines():
            key, _, value = line.partition("=")
            if key in ("global.cert", "install.cert", "download.cert"):
                named = value.strip("'\"")
    return Path(named) if named and Path(named).is_file() else None


def _context_files() -> list[Path]:
    """What a clone has: tracked files plus new ones git does not ignore (a developer's edits
    count); .dockerignore then narrows it down as it would for `docker compose build`."""
    listed = run(["git", "-C", str(REPO_ROOT), "ls-files", "-z", "--cached", "--others",
                  "--exclude-standard"], timeout=60, check=False)
    if listed.returncode == 0:
        names = {name for name in listed.stdout.split("\0") if name}
        paths = [REPO_ROOT / name for name in names]
    else:
        skip = {".git", ".venv", ".data", "__pycache__", ".mypy_cache", ".ruff_cache",
                ".pytest_cache"}
        paths = [p for p in REPO_ROOT.rglob("*")
                 if not skip & set(p.relative_to(REPO_ROOT).parts)]
    return sorted(p for p in paths if p.is_file() and not p.is_symlink())
