"""`python -m deploy.migrate [service ...]`: each service's Alembic chain to head, against the
database its own settings name (so the same command serves `make run`, compose and production),
or, when `<PREFIX>_MIGRATION_DATABASE_URL` is set, as that user: the migration user alone may
change the schema (CREATE, ALTER, DROP); the service's own user may only read and write rows.
Runs of one schema take turns on a MySQL named lock (shared.migrate).

`--wait`: change nothing; return once each schema is at head (a Kubernetes pod's init container
waits so for its service's migration Job).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os

from shared.migrate import upgrade, wait_for_head
from shared.services import SERVICES, service


def service_database_url(package: str) -> str:
    migration_url = os.environ.get(f"{service(package).env_prefix}_MIGRATION_DATABASE_URL")
    if migration_url:
        return migration_url
    settings_module = importlib.import_module(f"{package}.settings")
    url: str = settings_module.get_settings().database_url
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description="Apply each service's migrations.")
    parser.add_argument("services", nargs="*", metavar="SERVICE",
                        default=[app.package for app in SERVICES if app.has_database],
                        help="short name or package (default: every service with a database)")
    parser.add_argument("--wait", action="store_true",
                        help="migrate nothing: wait until each schema is at head")
    args = parser.parse_args()
    for name in args.services:
        try:
            app = service(name)
        except KeyError:
            parser.error(f"unknown service {name!r}")
        package = app.package
        if not app.has_database:  # the processor simulator: the entry point asks all apps
            print(f"{package} has no database")
            continue
        if args.wait:
            print(f"waiting for {package}'s schema to reach head", flush=True)
            asyncio.run(wait_for_head(package, service_database_url(package)))
            print(f"{package} is at head")
        else:
            upgrade(package, service_database_url(package))
            print(f"migrated {package}")


if __name__ == "__main__":
    main()
