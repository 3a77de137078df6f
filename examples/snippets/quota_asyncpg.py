# asyncpg: consume quota, catch QT429 and read its DETAIL (JSON). Connects with PGHOST/PGPORT/PGDATABASE/PGUSER.
import asyncio, json
import asyncpg

async def main():
    conn = await asyncpg.connect()
    for attempt in range(1, 4):
        try:  # asyncpg sends untyped parameters: each quota call resolves alone (0.6.0)
            d = await conn.fetchrow("SELECT * FROM quota.quota_consume($1, $2, $3)", "snippet-user", "messages", 1)
            print(f"message {attempt} allowed, {d['remaining']} left")
        except asyncpg.PostgresError as e:
            if e.sqlstate != "QT429":
                raise
            detail = json.loads(e.detail)
            print(f"message {attempt} refused: {detail['used']}/{detail['limit']} used, resets at {detail['reset_at']}")
            assert attempt == 3 and detail["remaining"] == 0
            return
    raise SystemExit("expected QT429 on the third message")

asyncio.run(main())
