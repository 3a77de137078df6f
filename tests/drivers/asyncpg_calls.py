"""Prepares every quota function at every arity (calls.sql reads them from pg_proc) with
asyncpg, which sends no parameter types: the server must resolve each call alone.
Connects with the libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE). Prints the
calls that do not resolve and exits 1 if there is one."""
import asyncio
import pathlib
import sys

import asyncpg

CALLS = (pathlib.Path(__file__).parent / "calls.sql").read_text()


async def main():
    conn = await asyncpg.connect()
    calls = await conn.fetch(CALLS)
    failed = 0
    for row in calls:
        try:
            await conn.prepare(row["call"])
        except asyncpg.PostgresError as e:
            print(f"asyncpg: {row['call']}: {e.sqlstate} {e}")
            failed += 1
    await conn.close()
    print(f"asyncpg: {len(calls) - failed} of {len(calls)} calls resolve")
    return 1 if failed or not calls else 0


sys.exit(asyncio.run(main()))
