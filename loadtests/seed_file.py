"""What `python -m loadtests.seed` writes and the Locust scenarios read: the sale's product and
the seeded accounts. Standard library only, so that every Locust process starts quickly."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SaleSeed:
    host: str
    product_id: int
    # ISO-8601 with Z, as the API gives it; `opens_at` is the same instant as epoch seconds.
    sale_opens_at: str
    opens_at: float
    stock: int
    limit_per_user: int
    price: int
    seller: dict[str, Any]
    # user_id, email, session_id, access_token of each; buyers take them first, social users next.
    accounts: list[dict[str, Any]]

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: Path) -> SaleSeed:
        return cls(**json.loads(path.read_text()))


def account_of_worker(pool: Sequence[dict[str, Any]], *, worker: int, workers: int,
                      taken: int) -> dict[str, Any]:
    """The `taken`-th account worker `worker` of `workers` hands out: every `workers`-th of the
    pool from its own index, so workers never share one (they go round again only when the
    dispatcher gives a worker more users than its share)."""
    mine = pool[worker::workers] or pool
    return mine[taken % len(mine)]
