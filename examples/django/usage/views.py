"""JSON endpoints of seed 004 (multi-tenant usage metering), served by quota_ext.

The subject of every quota is the tenant itself (seed 004 meters a tenant's usage per
metric and billing period); the X-Tenant header names it. One shared app role serves
every tenant, so quota.tenant is set per request transaction (see tenant_transaction)."""
import json
import logging
import math
import os
from datetime import datetime
from functools import wraps

from django.db import DatabaseError, transaction
from django.http import JsonResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import quota
from .models import TrackedProduct, UsageRequest

log = logging.getLogger("usage")

# SQLSTATE -> HTTP status for errors that end the request's transaction.
HTTP_STATUS = {"QT429": 429, "QT413": 413, "QT404": 404, "22023": 400, "22004": 400, "22003": 400, "23505": 409}


class BadRequest(Exception):
    pass


def api(view):
    """Tenant header, JSON body, and the mapping of quota errors to HTTP statuses."""

    @wraps(view)
    def wrapper(request, **kwargs):
        tenant = request.headers.get("X-Tenant", "")
        try:
            if not tenant or len(tenant.encode()) > 128:
                raise BadRequest("X-Tenant header required (at most 128 bytes)")
            body = {}
            if request.method == "POST":
                try:
                    body = json.loads(request.body or b"{}")
                except ValueError:
                    raise BadRequest("body must be JSON")
                if not isinstance(body, dict):
                    raise BadRequest("body must be a JSON object")
            return view(request, tenant, body, **kwargs)
        except BadRequest as e:
            return JsonResponse({"success": False, "error": {"code": "bad_request", "message": str(e)}}, status=400)
        except DatabaseError as e:
            # Raised out of the request's atomic(): that transaction is rolled back already.
            err = quota.quota_error(e)
            if err is None or err[0] not in HTTP_STATUS:
                raise
            return error_response(*err)

    return wrapper


def error_response(sqlstate, detail, hint):
    """The DETAIL's JSON fields as they are (never the message text), plus Retry-After
    for QT429. Also used for the other mapped errors (QT413, QT404, 22023, ...)."""
    resp = JsonResponse({"success": False, "error": detail, "hint": hint}, status=HTTP_STATUS[sqlstate])
    if sqlstate == "QT429" and detail.get("reset_at"):
        # Seconds from quota's own clock (quota.quota_clock()), not the app server's. Called
        # after the refusal was rolled back (to the savepoint, or the whole transaction).
        reset_at = datetime.fromisoformat(detail["reset_at"])
        wait = (reset_at - quota.clock()).total_seconds()
        resp["Retry-After"] = str(max(1, math.ceil(wait)))
    # A lifetime limit (tracked_products, a gauge) never resets: reset_at is null and no
    # Retry-After is sent; only freeing units (deleting products) or a larger plan helps.
    # (Seed 004 only says HARD raises QuotaExceededError; the HTTP mapping is ours.)
    return resp


def metric_and_amount(body):
    metric = body.get("metric_code")
    amount = body.get("amount", 1)
    if not isinstance(metric, str) or not metric:
        raise BadRequest("metric_code must be a non-empty string")
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise BadRequest("amount must be an integer")
    return metric, amount


def upper(enforcement):
    return enforcement.upper()  # seed 004 spells LimitEnforcement HARD / SOFT


def usage_dto(d):
    return {
        "metric_code": d["metric"],
        "current": d["used"],
        "limit": d["limit_value"] + d["bonus"],
        "remaining": d["remaining"],
        "enforcement": upper(d["enforcement"]),
        "period": d["period"],
        "reset_at": d["reset_at"].isoformat() if d["reset_at"] else None,
    }


def metered(req, write):
    """Runs `write` (a quota call, or an ORM write into a table with a quota) for the
    request whose app row is `req`. Returns (result, None) or (None, a 429/413 response).

    The nested atomic() is a savepoint. A QT429 raised inside it rolls back to the
    savepoint only, so the request's own writes (req) still commit. Without it, catching
    the error inside the outer atomic() leaves the whole transaction aborted: Django then
    refuses the next query (TransactionManagementError after a failed ORM write, or
    PostgreSQL's 25P02 after a raw cursor call) and nothing of the request commits."""
    try:
        with transaction.atomic():
            return write(), None
    except DatabaseError as e:
        err = quota.quota_error(e)
        if err is None or err[0] not in ("QT429", "QT413"):
            raise  # unknown metric, bad amount, unknown tenant: the whole request rolls back
    req.outcome = err[1].get("code", err[0])
    req.save(update_fields=["outcome"])  # still commits: the savepoint took the error
    log.info("usage refused: tenant=%s metric=%s detail=%s", req.tenant_id, req.metric_code, err[1])
    response = error_response(*err)
    response["X-Request-Id"] = str(req.id)
    return None, response


@require_POST
@api
def record_usage(request, tenant, body):
    metric, amount = metric_and_amount(body)
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise BadRequest("metadata must be a JSON object")
    with quota.tenant_transaction(tenant):
        # The app's own write in the same transaction as the consume.
        req = UsageRequest.objects.create(tenant_id=tenant, metric_code=metric, amount=amount, outcome="pending")
        # The JSON metadata lands in quota's immutable ledger (seed 004's usage events).
        decision, refused = metered(req, lambda: quota.consume(tenant, metric, amount, {**metadata, "request_id": req.id}))
        if refused:
            return refused
        req.outcome = decision["reason"]  # ok or soft_limit_exceeded
        req.save(update_fields=["outcome"])
    data = usage_dto(decision)
    data.update(request_id=req.id, amount=amount, reason=decision["reason"])
    # SOFT: over the limit is allowed and recorded (the ledger row carries the overage);
    # seed 004 says "allow + log warning".
    data["warning"] = "soft_limit_exceeded" if decision["reason"] == "soft_limit_exceeded" else None
    if data["warning"]:
        log.warning("soft limit exceeded: tenant=%s metric=%s used=%s", tenant, metric, decision["used"])
    return JsonResponse({"success": True, "data": data}, status=201)


@require_POST
@api
def add_products(request, tenant, body):
    skus = body.get("skus")
    if not isinstance(skus, list) or not skus or not all(isinstance(s, str) and s for s in skus):
        raise BadRequest("skus must be a non-empty list of strings")
    with quota.tenant_transaction(tenant):
        req = UsageRequest.objects.create(tenant_id=tenant, metric_code="tracked_products", amount=len(skus), outcome="pending")
        # One INSERT of all rows: the table's quota trigger consumes tracked_products per
        # row, and a refusal of any row fails the statement (nothing inserted or counted).
        _, refused = metered(req, lambda: TrackedProduct.objects.bulk_create(
            [TrackedProduct(tenant_id=tenant, sku=s) for s in skus]))
        if refused:
            return refused
        req.outcome = "ok"
        req.save(update_fields=["outcome"])
        state = quota.check(tenant, "tracked_products", 0)  # amount 0 reads the state
    return JsonResponse({"success": True, "data": {"request_id": req.id, "added": skus, "usage": usage_dto(state)}}, status=201)


@require_http_methods(["DELETE"])
@api
def remove_product(request, tenant, body, sku):
    with quota.tenant_transaction(tenant):
        deleted, _ = TrackedProduct.objects.filter(tenant_id=tenant, sku=sku).delete()
        if not deleted:
            return JsonResponse({"success": False, "error": {"code": "not_found", "message": "no such product"}}, status=404)
        # refund_on_delete: the table's AFTER DELETE trigger gave the unit back (a gauge).
        state = quota.check(tenant, "tracked_products", 0)
    return JsonResponse({"success": True, "data": {"removed": sku, "usage": usage_dto(state)}})


@require_POST
@api
def check_quota(request, tenant, body):
    metric, amount = metric_and_amount(body)
    with quota.tenant_transaction(tenant):
        d = quota.check(tenant, metric, amount)
    # Seed 004's contract: "remaining" is what would be left AFTER the request, negative
    # when it would exceed ({"would_exceed": true, "remaining": -2} for 10 more with 8
    # left). quota_check's own `remaining` is before the request and never below 0.
    # `would_exceed` is the seed's (the amount does not fit the limit, SOFT or HARD);
    # `allowed` is quota_ext's (false only for HARD: a SOFT consume would go through).
    after = d["limit_value"] + d["bonus"] - d["used"] - d["reserved"] - amount
    return JsonResponse({
        "would_exceed": after < 0,
        "remaining": after,
        "allowed": d["allowed"],
        "enforcement": upper(d["enforcement"]),
        "current": d["used"],
        "limit": d["limit_value"] + d["bonus"],
    })


@require_GET
def health(request):
    """For test.sh: under gunicorn, parent_pid is the master it started (pid is a worker)."""
    return JsonResponse({"status": "ok", "pid": os.getpid(), "parent_pid": os.getppid()})


@require_GET
@api
def quota_status(request, tenant, body):
    with quota.tenant_transaction(tenant):
        rows = quota.status(tenant)
    metrics = [usage_dto(r) for r in rows]
    return JsonResponse({"success": True, "data": {"metrics": metrics}})


@require_GET
@api
def usage_events(request, tenant, body):
    with quota.tenant_transaction(tenant):
        rows = quota.ledger(request.GET.get("metric_code"))
    events = [
        {
            "id": r["id"],
            "tenant_id": r["tenant"],
            "metric_code": r["metric"],
            "kind": r["kind"],
            "amount": r["amount"],
            "used_after": None if r["used_after"] is None else int(r["used_after"]),
            "overage": r["overage"],
            # Django's psycopg backend hands jsonb over as text (JSONField decodes it
            # itself), so a raw cursor gets a string: decode it here.
            "metadata": json.loads(r["metadata"]) if isinstance(r["metadata"], str) else r["metadata"],
            "created_at": r["created_at"].isoformat(),
        }
        for r in rows
    ]
    return JsonResponse({"success": True, "data": {"events": events}})


@require_GET
@api
def usage_requests(request, tenant, body):
    with quota.tenant_transaction(tenant):
        rows = list(UsageRequest.objects.filter(tenant_id=tenant).order_by("id").values("id", "metric_code", "amount", "outcome"))
    return JsonResponse({"success": True, "data": {"requests": rows}})
