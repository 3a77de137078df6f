# SQLAlchemy 2 Core (psycopg 3 driver): consume quota, catch QT429 and read its DETAIL (JSON).
# An empty URL lets libpq read PGHOST/PGPORT/PGDATABASE/PGUSER.
import json
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

engine = create_engine("postgresql+psycopg://")
consume = text("SELECT * FROM quota.quota_consume(:subject, :metric, :amount)")
for attempt in range(1, 4):
    try:
        with engine.begin() as conn:  # the consume commits or rolls back with this transaction
            d = conn.execute(consume, {"subject": "snippet-user", "metric": "messages", "amount": 1}).one()
            print(f"message {attempt} allowed, {d.remaining} left")
    except DBAPIError as e:
        if e.orig.sqlstate != "QT429":
            raise
        detail = json.loads(e.orig.diag.message_detail)
        print(f"message {attempt} refused: {detail['used']}/{detail['limit']} used, resets at {detail['reset_at']}")
        assert attempt == 3 and detail["remaining"] == 0
        raise SystemExit(0)
raise SystemExit("expected QT429 on the third message")
