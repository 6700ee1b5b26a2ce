"""Registers the project's test plugin (shared/testing/plugin.py: engine, session, client, the
SMTP sink, the test Redis, the sale system) for every test below this folder, whether pytest
starts here (`make test`) or in a subfolder (pyproject.toml makes this folder the rootdir, and
a rootdir's conftest.py is always read)."""

from __future__ import annotations

import pytest

# Before the plugin imports them: a failed assert in a helper then says what it compared.
pytest.register_assert_rewrite("shared.testing")

pytest_plugins = ("shared.testing.plugin",)

# Started first: `make test` hands whole modules to two workers, and one of these started last
# would leave a worker running it alone at the end (together about 2.5 of the suite's 7 minutes).
LONGEST_FIRST = frozenset({
    "loadtests/tests/test_chaos_run.py",
    "loadtests/tests/test_sale_run.py",
    "loadtests/tests/test_replicated_sale.py",
    "gateway/tests/test_e2e_openapi_conformance.py",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.nodeid.partition("::")[0] not in LONGEST_FIRST)
