"""`python - VARIABLE SCHEMA...`, in an app container: which schemas can the MySQL user in the
service's own database URL (environment variable VARIABLE) reach? Prints JSON: the user, the
schemas it sees, whether its own schema answers, for each other SCHEMA whether it was denied,
and whether it may change its own schema (a table created and dropped again).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import asyncmy
from sqlalchemy.engine import make_url

ACCESS_DENIED = (1044, 1142)  # to a database; to a table


async def probe(variable: str, others: list[str]) -> dict[str, Any]:
    url = make_url(os.environ[variable])
    connection = await asyncmy.connect(host=url.host, port=url.port or 3306, user=url.username,
                                       password=url.password or "", connect_timeout=10)
    result: dict[str, Any] = {"user": url.username, "own": url.database, "denied": {}}
    try:
        async with connection.cursor() as cursor:
            await cursor.execute("SHOW DATABASES")
            result["visible"] = sorted(row[0] for row in await cursor.fetchall())
            await cursor.execute(f"SHOW TABLES FROM `{url.database}`")
            result["own_tables"] = len(await cursor.fetchall())
            for schema in others:
                try:
                    await cursor.execute(f"SHOW TABLES FROM `{schema}`")
                    await cursor.fetchall()
                    result["denied"][schema] = False
                except asyncmy.errors.OperationalError as error:
                    result["denied"][schema] = error.args[0] in ACCESS_DENIED
            try:
                await cursor.execute(
                    f"CREATE TABLE `{url.database}`.`compose_check_ddl_probe` (id INT)")
                await cursor.execute(f"DROP TABLE `{url.database}`.`compose_check_ddl_probe`")
                result["ddl"] = True
            except (asyncmy.errors.OperationalError, asyncmy.errors.ProgrammingError) as error:
                if error.args[0] not in ACCESS_DENIED:
                    raise
                result["ddl"] = False
    finally:
        connection.close()
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(probe(sys.argv[1], sys.argv[2:]))))
