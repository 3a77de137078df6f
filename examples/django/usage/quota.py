"""Thin calls into quota_ext through Django's connection.cursor().

Every call runs inside the caller's transaction.atomic(): the consume, the app's own
writes and the ledger row commit or roll back together."""
import json
from contextlib import contextmanager

from django.db import DatabaseError, connection, transaction


@contextmanager
def tenant_transaction(tenant):
    """A request transaction acting for one tenant.

    set_config('quota.tenant', %s, true) is SET LOCAL: it ends with this transaction.
    A plain `SET quota.tenant` would stay on the connection, and Django keeps connections
    (CONN_MAX_AGE, pools), so the next request served by it, perhaps for another tenant,
    would inherit it. set_config also takes a bound parameter, which SET cannot."""
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SELECT set_config('quota.tenant', %s, true)", [tenant])
        yield


def _rows(cur):
    names = [c.name for c in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def consume(subject, metric, amount, metadata):
    """quota.quota_consume: raises (QT429, QT413, ...) as a DatabaseError. Call it inside
    a nested transaction.atomic() (a savepoint) when the transaction must go on after a
    refusal. `SELECT * FROM` gives typed columns (not one composite column)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT * FROM quota.quota_consume(%s, %s, %s, metadata => %s::jsonb)",
            [subject, metric, amount, json.dumps(metadata)],
        )
        return _rows(cur)[0]


def check(subject, metric, amount):
    with connection.cursor() as cur:
        cur.execute("SELECT * FROM quota.quota_check(%s, %s, %s)", [subject, metric, amount])
        return _rows(cur)[0]


def status(subject):
    with connection.cursor() as cur:
        cur.execute("SELECT * FROM quota.quota_status(%s) ORDER BY metric", [subject])
        return _rows(cur)


def ledger(metric=None):
    """The tenant's immutable usage events. No tenant filter here: quota.tenant scopes the
    view (row-level security), so another tenant's rows cannot show up."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT id, created_at, tenant, subject, metric, kind, amount, used_after, overage, metadata"
            " FROM quota.subject_ledger WHERE %s::text IS NULL OR metric = %s ORDER BY id",
            [metric, metric],
        )
        return _rows(cur)


def clock():
    """quota_ext's time: now() (the transaction's start), or quota.clock_override when a test
    pins it (superuser-set; the app's role cannot read the setting, but quota_clock() uses it).
    Retry-After is counted from it, so that it agrees with the window that refused."""
    with connection.cursor() as cur:
        cur.execute("SELECT quota.quota_clock()")
        return cur.fetchone()[0]


def quota_error(exc):
    """(sqlstate, detail dict, hint) of a quota_ext error wrapped by Django, else None.
    Django wraps psycopg's error: the driver's one, with sqlstate and diag, is __cause__."""
    cause = exc.__cause__ if isinstance(exc, DatabaseError) else None
    sqlstate = getattr(cause, "sqlstate", None)
    if not sqlstate:
        return None
    detail = cause.diag.message_detail
    try:
        detail = json.loads(detail) if detail else {}
    except ValueError:
        detail = {"message": detail}
    return sqlstate, detail, cause.diag.message_hint
