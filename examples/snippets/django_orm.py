import json, os, sys, django
from django.conf import settings
settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": os.environ["PGDATABASE"]}})
django.setup()  # host, port and user come from PGHOST, PGPORT, PGUSER
from django.db import DatabaseError, connection, transaction

def send_message(user):
    with transaction.atomic():                          # the request's transaction
        try:
            with transaction.atomic(), connection.cursor() as cur:  # a savepoint: a refusal undoes only this
                cur.execute("SELECT * FROM quota.quota_consume(%s, %s, %s)", [user, "messages", 1])
                return cur.fetchone()
        except DatabaseError as e:                      # Django wraps psycopg's error: see __cause__
            if getattr(e.__cause__, "sqlstate", None) != "QT429": raise
            detail = json.loads(e.__cause__.diag.message_detail)
        # the outer transaction is still usable here (log the refusal, ...); then it commits
        return detail

results = [send_message("snippet-user") for _ in range(3)]
print(results[-1])
sys.exit(0 if [type(r) for r in results] == [tuple, tuple, dict] and results[2]["code"] == "quota_exceeded" else 1)
