"""`python -m user_service.bulk_accounts --count N --output FILE`: verified accounts with access
tokens, for load tests (see user_service/auth/bulk.py). Reads the service's own settings from
the environment (USER_DATABASE_URL, its signing key), as the service would; writes JSON lines
of {user_id, email, session_id, access_token}."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from shared.db import create_engine, create_sessionmaker
from user_service.auth.bulk import create_verified_accounts
from user_service.auth.tokens import TokenSigner
from user_service.settings import get_settings


async def make(count: int, password: str) -> list[dict[str, object]]:
    settings = get_settings()
    engine = create_engine(settings.database_url, pool_size=2)
    try:
        accounts = await create_verified_accounts(
            create_sessionmaker(engine), TokenSigner.from_settings(settings), count=count,
            password=password)
    finally:
        await engine.dispose()
    return [account.as_dict() for account in accounts]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--password", default="correct horse battery staple")
    args = parser.parse_args()
    accounts = asyncio.run(make(args.count, args.password))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("".join(json.dumps(account) + "\n" for account in accounts))
    print(f"{len(accounts)} verified accounts with tokens written to {args.output}")


if __name__ == "__main__":
    main()
