"""HTTP assertions against the running app (stdlib only). Exact values, one line per check."""
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

BASE = f"http://127.0.0.1:{os.environ.get('EXAMPLE_PORT', '55721')}"


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def eq(name, got, want):
    if got != want:
        fail(f"{name}:\n  got  {got!r}\n  want {want!r}")
    print(f"ok: {name}")


def call(method, path, tenant=None, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if tenant:
        req.add_header("X-Tenant", tenant)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


# quota's clock for the app's role, pinned by test.sh (quota.clock_override): the expected
# reset_at and Retry-After come from it, never from the wall clock.
NOW = datetime.fromisoformat(os.environ["QUOTA_CLOCK"])  # 2026-11-23 12:00:00+00


def next_cycle_reset(now):
    """Billing cycles start on the 15th at 00:00 UTC (cycle_anchor 2025-01-15)."""
    y, m = now.year, now.month
    if now.day >= 15:
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return datetime(y, m, 15, tzinfo=timezone.utc)


def wait_for_app():
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(BASE + "/api/quota/status/", timeout=1)
        except urllib.error.HTTPError:
            return  # it answers (400 without a tenant)
        except OSError:
            if time.monotonic() > deadline:
                fail(f"the app did not answer on {BASE} within 30 s")
            time.sleep(0.1)


def metric(code, current, limit, enforcement, period, reset_at):
    return {"metric_code": code, "current": current, "limit": limit, "remaining": max(limit - current, 0),
            "enforcement": enforcement, "period": period, "reset_at": reset_at}


def status_of(tenant):
    s, _, body = call("GET", "/api/quota/status/", tenant)
    if s != 200:
        fail(f"status of {tenant}: HTTP {s} {body}")
    return body


def ledger(tenant, metric_code=None):
    path = "/api/quota/events/" + (f"?metric_code={metric_code}" if metric_code else "")
    s, _, body = call("GET", path, tenant)
    if s != 200:
        fail(f"events of {tenant}: HTTP {s} {body}")
    return body["data"]["events"]


def brief(events):
    return [(e["tenant_id"], e["metric_code"], e["kind"], e["amount"], e["used_after"], e["overage"]) for e in events]


def outcomes(tenant):
    s, _, body = call("GET", "/api/quota/requests/", tenant)
    if s != 200:
        fail(f"requests of {tenant}: HTTP {s} {body}")
    return [(r["metric_code"], r["amount"], r["outcome"]) for r in body["data"]["requests"]]


def main():
    wait_for_app()
    reset = next_cycle_reset(NOW)            # 2026-12-15 00:00 UTC
    reset_iso = reset.isoformat()            # as the app's JSON gives it: 2026-12-15T00:00:00+00:00
    reset_detail = reset.strftime("%Y-%m-%dT%H:%M:%SZ")  # as quota_ext's DETAIL gives it

    # --- status of a fresh tenant: every metric of the plan, seed 004's shape
    eq("status: acme starts empty, 3 metrics (HARD/SOFT, billing_cycle/lifetime)", status_of("acme"), {
        "success": True, "data": {"metrics": [
            metric("api_calls", 0, 100, "HARD", "billing_cycle", reset_iso),
            metric("emails_sent", 0, 10, "SOFT", "billing_cycle", reset_iso),
            metric("tracked_products", 0, 50, "HARD", "lifetime", None)]}})
    s, _, body = call("GET", "/api/quota/status/")
    eq("no X-Tenant header -> 400", (s, body["error"]["code"]), (400, "bad_request"))
    s, _, body = call("GET", "/api/quota/status/", "initech")
    eq("tenant without a plan -> 404 unknown_subject (QT404)", (s, body["error"]["code"]), (404, "unknown_subject"))

    # --- tracked_products through the table quota: 42 products, as in seed 004's example
    s, _, body = call("POST", "/api/products/", "acme", {"skus": [f"sku-{i}" for i in range(42)]})
    eq("POST 42 products -> 201, tracked_products 42 of 50", (s, body["data"]["usage"]),
       (201, metric("tracked_products", 42, 50, "HARD", "lifetime", None)))
    eq("status: tracked_products current 42, remaining 8", status_of("acme")["data"]["metrics"][2],
       metric("tracked_products", 42, 50, "HARD", "lifetime", None))

    # --- dry run (seed 004: {"would_exceed": true, "remaining": -2})
    s, _, body = call("POST", "/api/quota/check/", "acme", {"metric_code": "tracked_products", "amount": 10})
    eq("check 10 more tracked_products -> would_exceed, remaining -2", (s, body),
       (200, {"would_exceed": True, "remaining": -2, "allowed": False, "enforcement": "HARD", "current": 42, "limit": 50}))
    s, _, body = call("POST", "/api/quota/check/", "acme", {"metric_code": "tracked_products", "amount": 8})
    eq("check 8 more -> fits exactly, remaining 0", (s, body["would_exceed"], body["remaining"], body["allowed"]),
       (200, False, 0, True))

    # --- HARD refusal of a lifetime gauge: 429 without Retry-After (it never resets)
    s, h, body = call("POST", "/api/products/", "acme", {"skus": [f"new-{i}" for i in range(10)]})
    err = body["error"]
    eq("POST 10 more products -> 429 quota_exceeded, DETAIL fields",
       (s, err["code"], err["metric"], err["limit"], err["used"], err["remaining"], err["requested"],
        err["reset_at"], err["period"], err["enforcement"]),
       (429, "quota_exceeded", "tracked_products", 50, 50, 0, 1, None, "lifetime", "hard"))
    eq("lifetime refusal has no Retry-After", h.get("Retry-After"), None)
    eq("the refused INSERT added nothing (tracked_products still 42)",
       status_of("acme")["data"]["metrics"][2]["current"], 42)

    # --- HARD refusal of a billing-period metric: 429 with Retry-After until the next cycle
    s, _, body = call("POST", "/api/quota/usage/", "acme",
                      {"metric_code": "api_calls", "amount": 100, "metadata": {"action": "sync", "batch": 7}})
    d = body["data"]
    eq("consume 100 api_calls -> 201, current 100, remaining 0",
       (s, d["current"], d["remaining"], d["limit"], d["enforcement"], d["reason"], d["warning"], d["reset_at"]),
       (201, 100, 0, 100, "HARD", "ok", None, reset_iso))
    api_request_id = d["request_id"]
    s, h, body = call("POST", "/api/quota/usage/", "acme", {"metric_code": "api_calls", "amount": 1, "metadata": {"action": "sync"}})
    err = body["error"]
    eq("consume 1 more api_call -> 429, used 100, remaining 0, reset_at next 15th",
       (s, err["code"], err["used"], err["remaining"], err["requested"], err["limit"], err["reset_at"], err["period"]),
       (429, "quota_exceeded", 100, 0, 1, 100, reset_detail, "billing_cycle"))
    # The app counts from quota's clock (pinned), so the header is exact: 21.5 days.
    eq(f"Retry-After = seconds from the pinned clock to {reset_detail}", h.get("Retry-After"),
       str(math.ceil((reset - NOW).total_seconds())))

    # --- the nested atomic(): the refused requests' app rows committed all the same
    eq("request log: refused requests committed with the request's transaction", outcomes("acme"), [
        ("tracked_products", 42, "ok"), ("tracked_products", 10, "quota_exceeded"),
        ("api_calls", 100, "ok"), ("api_calls", 1, "quota_exceeded")])

    # --- bad input: the whole request rolls back (no log row), 400 with the DETAIL code
    s, _, body = call("POST", "/api/quota/usage/", "acme", {"metric_code": "tracked_prodcts", "amount": 1})
    eq("unknown metric -> 400 invalid_argument (22023)", (s, body["error"]["code"]), (400, "invalid_argument"))
    s, _, body = call("POST", "/api/quota/usage/", "acme", {"metric_code": "api_calls", "amount": 0})
    eq("amount 0 -> 400 invalid_argument", (s, body["error"]["code"]), (400, "invalid_argument"))
    s, _, body = call("POST", "/api/quota/usage/", "acme", raw=b"{not json")
    eq("body not JSON -> 400", (s, body["error"]["code"]), (400, "bad_request"))
    eq("request log unchanged by the rolled-back requests", len(outcomes("acme")), 4)

    # --- SOFT: over the limit is allowed and recorded
    s, _, body = call("POST", "/api/quota/usage/", "acme", {"metric_code": "emails_sent", "amount": 8, "metadata": {"campaign": "welcome"}})
    d = body["data"]
    eq("consume 8 emails_sent (SOFT, limit 10) -> 201 ok, remaining 2",
       (s, d["current"], d["remaining"], d["reason"], d["warning"]), (201, 8, 2, "ok", None))
    s, _, body = call("POST", "/api/quota/check/", "acme", {"metric_code": "emails_sent", "amount": 5})
    eq("check 5 more SOFT -> would_exceed, remaining -3, but allowed", (s, body["would_exceed"], body["remaining"], body["allowed"]),
       (200, True, -3, True))
    s, _, body = call("POST", "/api/quota/usage/", "acme", {"metric_code": "emails_sent", "amount": 5, "metadata": {"campaign": "promo"}})
    d = body["data"]
    eq("consume 5 more SOFT -> 201 soft_limit_exceeded, current 13",
       (s, d["current"], d["limit"], d["remaining"], d["enforcement"], d["reason"], d["warning"]),
       (201, 13, 10, 0, "SOFT", "soft_limit_exceeded", "soft_limit_exceeded"))
    eq("ledger: the SOFT overage recorded (3 over)", [(e["amount"], e["used_after"], e["overage"], e["metadata"]["campaign"])
                                                    for e in ledger("acme", "emails_sent")],
       [(8, 8, 0, "welcome"), (5, 13, 3, "promo")])

    # --- the audit trail: every consume with its JSON metadata, refusals leave nothing
    events = ledger("acme")
    eq("ledger of acme: 42 product rows, 1 api_calls, 2 emails_sent, all acme's", brief(events),
       [("acme", "tracked_products", "consume", 1, i, 0) for i in range(1, 43)]
       + [("acme", "api_calls", "consume", 100, 100, 0),
          ("acme", "emails_sent", "consume", 8, 8, 0), ("acme", "emails_sent", "consume", 5, 13, 3)])
    eq("ledger metadata as sent, with the app's request_id", events[42]["metadata"],
       {"action": "sync", "batch": 7, "request_id": api_request_id})

    # --- tenant isolation
    eq("status: globex untouched by acme's usage", status_of("globex"), {
        "success": True, "data": {"metrics": [
            metric("api_calls", 0, 100, "HARD", "billing_cycle", reset_iso),
            metric("emails_sent", 0, 10, "SOFT", "billing_cycle", reset_iso),
            metric("tracked_products", 0, 50, "HARD", "lifetime", None)]}})
    eq("ledger: globex sees none of acme's events", ledger("globex"), [])
    s, _, body = call("POST", "/api/products/", "globex", {"skus": [f"sku-{i}" for i in range(50)]})
    eq("globex adds 50 products (its own limit; acme's 42 do not count)", (s, body["data"]["usage"]["current"],
                                                                          body["data"]["usage"]["remaining"]), (201, 50, 0))
    s, _, body = call("POST", "/api/quota/usage/", "globex", {"metric_code": "api_calls", "amount": 3})
    eq("globex consumes api_calls while acme is refused", (s, body["data"]["current"], body["data"]["remaining"]), (201, 3, 97))
    eq("ledger: globex sees only its own 51 events", (len(ledger("globex")), {e["tenant_id"] for e in ledger("globex")}),
       (51, {"globex"}))
    eq("status: acme unchanged by globex", [(m["metric_code"], m["current"]) for m in status_of("acme")["data"]["metrics"]],
       [("api_calls", 100), ("emails_sent", 13), ("tracked_products", 42)])
    eq("ledger: acme still sees its 45 events only", len(ledger("acme")), 45)
    eq("request log: globex sees its own requests only", outcomes("globex"),
       [("tracked_products", 50, "ok"), ("api_calls", 3, "ok")])

    # --- tracked_products is a gauge: deleting a product gives its unit back
    s, _, body = call("DELETE", "/api/products/sku-0/", "acme")
    eq("DELETE a product -> 200, tracked_products back to 41, remaining 9", (s, body["data"]["usage"]),
       (200, metric("tracked_products", 41, 50, "HARD", "lifetime", None)))
    eq("ledger: the refund row", brief(ledger("acme", "tracked_products"))[-1], ("acme", "tracked_products", "refund", 1, 41, 0))
    s, _, body = call("DELETE", "/api/products/sku-45/", "acme")
    eq("acme cannot delete globex's sku-45 -> 404", (s, body["error"]["code"]), (404, "not_found"))
    s, _, body = call("DELETE", "/api/products/sku-1/", "globex")
    eq("globex deletes its own sku-1: 49, acme keeps 41",
       (s, body["data"]["usage"]["current"], status_of("acme")["data"]["metrics"][2]["current"]), (200, 49, 41))


if __name__ == "__main__":
    main()
