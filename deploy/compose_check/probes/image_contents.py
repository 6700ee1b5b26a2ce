"""`python - PACKAGE...`, in the app image: what would not belong in an image that only runs the
apps? Prints JSON: the user it runs as, development tools found as modules (ours too: the load
tests, `make run`, this check) and as programs, test directories inside the project's own
PACKAGEs, and any copy of the CA bundle given to the build."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

DEV_MODULES = ("pytest", "mypy", "ruff", "locust", "hypothesis", "schemathesis", "IPython", "uv",
               "httpx", "aiosmtpd", "loadtests", "shared.testing", "deploy.compose_check",
               "deploy.run_local", "deploy.prepare_tests", "deploy.mail_sink", "deploy.dev_keys")
DEV_PROGRAMS = ("gcc", "cc", "make", "git", "pytest", "mypy", "ruff", "locust")
BUILD_CA_NAME = ".pip-ca.pem"
NOT_FILES = ("/proc", "/sys", "/dev")


def project_test_directories(packages: list[str]) -> list[str]:
    found = []
    for package in packages:
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            for directory, subdirectories, _ in os.walk(location):
                found += [str(Path(directory) / d) for d in subdirectories if d == "tests"]
    return found


def build_ca_copies() -> list[str]:
    found = []
    for directory, subdirectories, files in os.walk("/"):
        subdirectories[:] = [d for d in subdirectories
                             if os.path.join(directory, d) not in NOT_FILES]
        found += [os.path.join(directory, f) for f in files if f == BUILD_CA_NAME]
    return found


def importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def inventory(packages: list[str]) -> dict[str, Any]:
    return {
        "uid": os.getuid(),
        "modules": [m for m in DEV_MODULES if importable(m)],
        "programs": [p for p in DEV_PROGRAMS if shutil.which(p) is not None],
        "tests": project_test_directories(packages),
        "build_ca": build_ca_copies(),
    }


if __name__ == "__main__":
    print(json.dumps(inventory(sys.argv[1:])))
