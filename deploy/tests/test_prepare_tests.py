"""`make test`'s set-up checks the datastores the tests use, not the services' own."""

from __future__ import annotations

import io

from deploy.prepare_tests import datastores_for_tests, prepare
from deploy.run_local import LogStream
from shared.testing.datastores import TEST_REDIS_URL


def test_the_tests_datastores_are_the_test_urls_server_only() -> None:
    stores = datastores_for_tests("mysql+asyncmy://root:pw@127.0.0.1:3307/preorder_user_test",
                                  "redis://127.0.0.1:6379/9")
    # The server without the schema: the tests create and drop their schemas themselves.
    assert stores.mysql_servers == ("mysql+asyncmy://root:pw@127.0.0.1:3307",)
    assert stores.redis_urls == ("redis://127.0.0.1:6379/9",)


async def test_answering_datastores_are_used_as_they_are() -> None:
    out = io.StringIO()
    await prepare(LogStream(out))
    assert "already answer" in out.getvalue()
    assert "error" not in out.getvalue()
    assert datastores_for_tests().redis_urls == (TEST_REDIS_URL,)
