"""Schema names from configuration are checked before they reach SQL."""

from __future__ import annotations

import pytest

from shared.migrate import ensure_database


@pytest.mark.parametrize("name", ["bad`name", "x; DROP DATABASE mysql", "a-b", ""])
async def test_unsafe_schema_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="schema name"):
        await ensure_database(f"mysql+asyncmy://root@127.0.0.1:3306/{name}")

