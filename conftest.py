"""Registers the project's test plugin (shared/testing/plugin.py: engine, session, client, the
SMTP sink, the test Redis, the sale system) for every test below this folder, whether pytest
starts here (`make test`) or in a subfolder (pyproject.toml makes this folder the rootdir, and
a rootdir's conftest.py is always read)."""

from __future__ import annotations

import pytest

# Before the plugin imports them: a failed assert in a helper then says what it compared.
pytest.register_assert_rewrite("shared.testing")

pytest_plugins = ("shared.testing.plugin",)
