"""`python -m loadtests.seed`: what a sale-opening load run needs, made in seconds: N verified
users with access tokens and the sale's product, written to one JSON file the Locust scenarios
read.

    USER_DATABASE_URL=... USER_JWT_KEY_DIR=... python -m loadtests.seed \\
        --host http://127.0.0.1:8000 --users 2150 --stock 200 --opens-in 40 \\
        --output .data/loadtests/seed.json

The accounts are made by user_service's operator path (user_service/auth/bulk.py: no Argon2 per
account, no SMTP), so this runs where user_service's settings are: its database and signing key
come from the environment, as the service's own do. The product is listed through the public
API by one more seeded account (the seller, granted the `seller` role), as a preorder opening
`--opens-in` seconds from now with `--stock` units and `--limit-per-user`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from loadtests.seed_file import SaleSeed
from shared.clock import utcnow
from shared.contracts import SELLER_ROLE
from shared.db import create_engine, create_sessionmaker
from shared.schemas import to_utc_z
from user_service.auth.bulk import BulkAccount, create_verified_accounts
from user_service.auth.tokens import TokenSigner
from user_service.settings import Settings as UserSettings
from user_service.settings import get_settings

PASSWORD = "load test buyer password"
PRICE = 99_000


async def create_accounts(settings: UserSettings, count: int, *, email_prefix: str = "load",
                          roles: tuple[str, ...] = ()) -> list[BulkAccount]:
    engine = create_engine(settings.database_url, pool_size=2)
    try:
        return await create_verified_accounts(create_sessionmaker(engine),
                                              TokenSigner.from_settings(settings), count=count,
                                              password=PASSWORD, email_prefix=email_prefix,
                                              roles=roles)
    finally:
        await engine.dispose()


async def list_sale_product(host: str, seller: BulkAccount, *, stock: int, opens_in: float,
                            limit_per_user: int) -> dict[str, Any]:
    """The product, listed by `seller` through the gateway; its stock checked on the public
    route (stock_service learns it from product_service)."""
    opens_at = utcnow() + timedelta(seconds=opens_in)
    body = {"name": "Load test pre-order", "description": "sale-opening load test",
            "price": PRICE, "stock": stock, "kind": "preorder",
            "sale_opens_at": to_utc_z(opens_at), "limit_per_user": limit_per_user}
    async with httpx.AsyncClient(base_url=host, timeout=30) as client:
        listed = await client.post("/api/v1/products", json=body,
                                   headers={"Authorization": f"Bearer {seller.access_token}"})
        if listed.status_code != 201:
            raise RuntimeError(f"listing the product: {listed.status_code} {listed.text}")
        product: dict[str, Any] = listed.json()
        live = await client.get(f"/api/v1/products/{product['id']}/stock")
        if live.status_code != 200 or live.json()["remaining"] != stock:
            raise RuntimeError(f"the product's stock is not live: {live.status_code} {live.text}")
    return product


async def seed(host: str, settings: UserSettings, *, users: int, stock: int, opens_in: float,
               limit_per_user: int = 1) -> SaleSeed:
    # The seller holds the `seller` role, as an operator grants it (python -m user_service.roles).
    [seller] = await create_accounts(settings, 1, email_prefix="seller", roles=(SELLER_ROLE,))
    crowd = await create_accounts(settings, users)
    product = await list_sale_product(host, seller, stock=stock, opens_in=opens_in,
                                      limit_per_user=limit_per_user)
    opens_at = product["sale_opens_at"]
    return SaleSeed(host=host, product_id=int(product["id"]), sale_opens_at=opens_at,
                    opens_at=_epoch(opens_at), stock=stock, limit_per_user=limit_per_user,
                    price=PRICE, seller=seller.as_dict(),
                    accounts=[account.as_dict() for account in crowd])


def _epoch(iso_z: str) -> float:
    return datetime.fromisoformat(iso_z.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="http://127.0.0.1:8000", help="the gateway")
    parser.add_argument("--users", type=int, default=2150,
                        help="accounts for the crowd (buyers first, then social users)")
    parser.add_argument("--stock", type=int, default=200)
    parser.add_argument("--opens-in", type=float, default=60.0,
                        help="seconds from now to the product's sale_opens_at")
    parser.add_argument("--limit-per-user", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path(".data/loadtests/seed.json"))
    args = parser.parse_args()
    started = time.monotonic()
    made = asyncio.run(seed(args.host.rstrip("/"), get_settings(), users=args.users,
                            stock=args.stock, opens_in=args.opens_in,
                            limit_per_user=args.limit_per_user))
    made.write(args.output)
    print(f"{len(made.accounts)} verified users with tokens and product {made.product_id} "
          f"(stock {made.stock}, opens {made.sale_opens_at}) in "
          f"{time.monotonic() - started:.1f} s: {args.output}")


if __name__ == "__main__":
    main()
