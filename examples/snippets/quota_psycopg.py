# psycopg 3: consume quota, catch QT429 and read its DETAIL (JSON). Connects with PGHOST/PGPORT/PGDATABASE/PGUSER.
import json
import psycopg
from psycopg.rows import namedtuple_row

with psycopg.connect(autocommit=True, row_factory=namedtuple_row) as conn:
    for attempt in range(1, 4):
        try:
            d = conn.execute("SELECT * FROM quota.quota_consume(%s, %s, %s)", ("snippet-user", "messages", 1)).fetchone()
            print(f"message {attempt} allowed, {d.remaining} left")
        except psycopg.Error as e:
            if e.sqlstate != "QT429":
                raise
            detail = json.loads(e.diag.message_detail)
            print(f"message {attempt} refused: {detail['used']}/{detail['limit']} used, resets at {detail['reset_at']}")
            assert attempt == 3 and detail["remaining"] == 0
            raise SystemExit(0)
raise SystemExit("expected QT429 on the third message")
