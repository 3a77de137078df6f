"""The seed's quota service (get_quota_status, consume_quota_or_raise), now a thin layer over
quota_ext: the counting, the UTC day window and the atomic decrement happen in PostgreSQL."""
import json
import math
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details or {}, headers or {}


def iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_quota_status(session: Session, user_id: str) -> dict:
    """Today's message quota. STABLE: reads this statement's snapshot, writes nothing."""
    # SELECT * FROM gives typed columns (SELECT quota.quota_status(...) would give one composite).
    # One row per limit of the user (level 0) and, for a member of a team's pool, of the
    # pool (level 1, and up for a pool's pool): the user's own first.
    rows = session.execute(
        text("SELECT limit_value, bonus, used, remaining, reset_at, pool, level"
             " FROM quota.quota_status(:user_id) WHERE metric = 'messages' ORDER BY level"),
        {"user_id": user_id},
    ).all()
    if not rows or rows[0].level != 0:  # a plan without a message limit: no chat subscription
        raise ApiError(403, "no_active_subscription", "Your plan does not include chat messages.")
    row = rows[0]
    status = {
        "limit": row.limit_value + row.bonus,
        "consumed": row.used,
        "remaining": row.remaining,
        "reset_at": iso(row.reset_at),
        "quota_date": (row.reset_at.astimezone(timezone.utc) - timedelta(days=1)).date().isoformat(),
    }
    if len(rows) > 1:  # the team pool the user draws from (the nearest)
        p = rows[1]
        status["pool"] = {"id": p.pool, "limit": p.limit_value + p.bonus, "consumed": p.used, "remaining": p.remaining}
    return status


def quota_error(exc: DBAPIError, clock: Callable[[], datetime]) -> ApiError | None:
    """Maps quota_ext's refusals to the seed's stable error codes (None: not a quota error).
    clock() gives quota_ext's own time (SELECT quota.quota_clock()), for Retry-After."""
    sqlstate = getattr(exc.orig, "sqlstate", None)  # no driver has a class for SQLSTATE class QT
    diag = getattr(exc.orig, "diag", None)
    detail = json.loads(diag.message_detail) if sqlstate in ("QT429", "QT404", "XX001") else {}
    if sqlstate == "QT429":
        # DETAIL: {"code":"quota_exceeded","limit":5,"used":5,"remaining":0,"reset_at":"...Z","level":0,...}
        reset_at = datetime.fromisoformat(detail["reset_at"].replace("Z", "+00:00"))
        # Seconds from quota's clock, not the app server's: the same instant that chose the
        # window (and exact when a test pins quota.clock_override).
        retry_after = max(1, math.ceil((reset_at - clock()).total_seconds()))
        details = {"remaining": detail["remaining"], "limit": detail["limit"], "consumed": detail["used"],
                   "reset_at": detail["reset_at"]}
        if detail.get("level", 0) > 0:
            # The user's own quota has room, but a pool they draw from (their team's) is used
            # up: subject is then the pool, level how far up it is, member the user.
            details["pool"] = detail["subject"]
            message = (f"Your team's shared daily message pool is used up ({detail['limit']} a day for the whole team). "
                       f"Try again after {detail['reset_at']}.")
        else:
            message = f"Daily message limit reached ({detail['limit']} a day). Try again after {detail['reset_at']}."
        return ApiError(429, "quota_exceeded", message, details, {"Retry-After": str(retry_after)})
    if sqlstate == "QT404":  # no plan assigned (quota.default_plan is unset on purpose)
        return ApiError(403, "no_active_subscription", "No active subscription: choose a plan to send messages.")
    if sqlstate == "XX001":  # data_corrupted: a quota row was changed by hand; support must fix it
        return ApiError(500, "invalid_quota_state", "Your quota state is inconsistent; support has been notified.",
                        {"table": detail.get("table"), "column": detail.get("column")})
    return None
