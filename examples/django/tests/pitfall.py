"""The Django pitfall, with Django itself (as the app's role): catching a quota refusal
inside transaction.atomic() without a nested atomic() (a savepoint) loses the request.

Tenant umbrella fills its tracked_products (50) and api_calls (100) first."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meter.settings")
import django  # noqa: E402

django.setup()
from django.db import DatabaseError, InternalError, transaction  # noqa: E402
from django.db.transaction import TransactionManagementError  # noqa: E402

from usage import quota  # noqa: E402
from usage.models import TrackedProduct, UsageRequest  # noqa: E402

T = "umbrella"


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def logged(outcome):
    return UsageRequest.objects.filter(tenant_id=T, outcome=outcome).count()


def refused(exc):
    err = quota.quota_error(exc)
    return err is not None and err[0] == "QT429"


with quota.tenant_transaction(T):
    TrackedProduct.objects.bulk_create([TrackedProduct(tenant_id=T, sku=f"p{i}") for i in range(50)])
    quota.consume(T, "api_calls", 100, {"action": "fill"})

# 1. An ORM write refused by the table quota, caught without a savepoint: Django marks the
#    transaction for rollback and refuses the next query with TransactionManagementError.
raised = None
try:
    with quota.tenant_transaction(T):
        req = UsageRequest.objects.create(tenant_id=T, metric_code="tracked_products", amount=1, outcome="orm-no-savepoint")
        try:
            TrackedProduct.objects.create(tenant_id=T, sku="one-too-many")
        except DatabaseError as e:
            if not refused(e):
                raise
        req.save()  # the app goes on as if nothing happened
except TransactionManagementError as e:
    raised = e
if raised is None:
    fail("no TransactionManagementError after a caught QT429 of an ORM write without a nested atomic()")
if logged("orm-no-savepoint") != 0:
    fail("the request's row committed although the transaction was broken")
print("ok: ORM write refused (QT429) and caught without a nested atomic() -> TransactionManagementError, request row lost")

# 2. A raw cursor call (quota_consume) caught without a savepoint: Django does not know;
#    the next query fails in PostgreSQL with 25P02 (in failed SQL transaction).
raised = None
try:
    with quota.tenant_transaction(T):
        req = UsageRequest.objects.create(tenant_id=T, metric_code="api_calls", amount=1, outcome="raw-no-savepoint")
        try:
            quota.consume(T, "api_calls", 1, {})
        except DatabaseError as e:
            if not refused(e):
                raise
        req.save()
except InternalError as e:
    raised = e
if raised is None or getattr(raised.__cause__, "sqlstate", None) != "25P02":
    fail(f"expected 25P02 on the next query after a caught QT429 of a raw call, got {raised!r}")
print("ok: raw quota_consume refused and caught without a nested atomic() -> next query fails with 25P02")

# 3. Worse: with no further query the block ends "normally", but COMMIT of the aborted
#    transaction is a ROLLBACK, so the request's row silently disappears.
with quota.tenant_transaction(T):
    UsageRequest.objects.create(tenant_id=T, metric_code="api_calls", amount=1, outcome="silent-loss")
    try:
        quota.consume(T, "api_calls", 1, {})
    except DatabaseError as e:
        if not refused(e):
            raise
if logged("silent-loss") != 0:
    fail("the row of an aborted transaction was committed")
print("ok: caught without a nested atomic() and no further query -> no error, yet the request row is silently lost")

# 4. The fix: the nested atomic() around the call; the request's own write commits.
with quota.tenant_transaction(T):
    req = UsageRequest.objects.create(tenant_id=T, metric_code="api_calls", amount=1, outcome="pending")
    try:
        with transaction.atomic():
            quota.consume(T, "api_calls", 1, {})
    except DatabaseError as e:
        if not refused(e):
            raise
        req.outcome = "quota_exceeded"
        req.save()
if logged("quota_exceeded") != 1:
    fail("with a nested atomic() the request's row should have committed")
print("ok: with a nested atomic() the refusal rolls back to the savepoint and the request row commits")
