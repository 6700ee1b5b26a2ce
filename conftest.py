"""Registers the project's test plugin (shared/testing/plugin.py: engine, session, client, the
SMTP sink, the test Redis, the sale system) for every test below this folder, whether pytest
starts here (`make test`) or in a subfolder (pyproject.toml makes this folder the rootdir, and
a rootdir's conftest.py is always read)."""

from __future__ import annotations

from typing import Any

import pytest

# Before the plugin imports them: a failed assert in a helper then says what it compared.
pytest.register_assert_rewrite("shared.testing")

pytest_plugins = ("shared.testing.plugin",)

# Started first: `make test` hands whole modules to two workers, and one of these started last
# would leave a worker running it alone at the end (together over 2 of the suite's 6 minutes).
LONGEST_FIRST = frozenset({
    "loadtests/tests/test_chaos_run.py",
    "loadtests/tests/test_sale_run.py",
    "loadtests/tests/test_replicated_sale.py",
    "gateway/tests/test_e2e_openapi_conformance.py",
})


# Each handed to one worker whole: their package-scoped fixtures (a system on a Redis Cluster)
# then start once, not once per module that a worker happens to run between others.
WHOLE_PACKAGES = ("gateway/tests/redis_cluster/", "product_service/tests/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.nodeid.partition("::")[0] not in LONGEST_FIRST)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadFileScheduling

    class WholeModulesAndPackages(LoadFileScheduling):  # type: ignore[misc]  # untyped
        """Whole modules to a worker, as `--dist loadfile` hands them, and WHOLE_PACKAGES whole."""

        def _split_scope(self, nodeid: str) -> str:
            module = super()._split_scope(nodeid)
            return next((package for package in WHOLE_PACKAGES if module.startswith(package)),
                        module)

    return WholeModulesAndPackages(config, log)
