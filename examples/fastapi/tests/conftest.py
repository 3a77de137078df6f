"""Fixtures: the running app (APP_URL, started by test.sh) and an admin connection to its
database as postgres, to set plans up and to read the truth from the tables.

quota's clock is pinned (quota.clock_override = QUOTA_CLOCK, set by test.sh for the app's role):
every expected reset_at, quota_date and Retry-After is computed from that instant, never
from the wall clock, so a run across midnight UTC gives the same answers."""
import os
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import psycopg
import pytest

APP_URL = os.environ["APP_URL"]
QUOTA_CLOCK = os.environ["QUOTA_CLOCK"]              # "2026-11-23 12:00:00+00"
NOW = datetime.fromisoformat(QUOTA_CLOCK)           # quota's "now" for the app and for db
TODAY = NOW.astimezone(timezone.utc).date()         # the UTC day of the messages window
RESET = datetime.combine(TODAY + timedelta(days=1), datetime.min.time(), timezone.utc)


@pytest.fixture(scope="session")
def db():
    with psycopg.connect(dbname=os.environ["EXAMPLE_DB"], user="postgres", autocommit=True) as conn:
        # The same pinned clock as the app's role: rows inserted here count in the same day.
        conn.execute("SELECT set_config('quota.clock_override', %s, false)", (QUOTA_CLOCK,))
        assert conn.execute("SELECT quota.quota_clock()").fetchone()[0] == NOW
        yield conn


@pytest.fixture(scope="session")
def http():
    with httpx.Client(base_url=APP_URL, timeout=10) as client:
        yield client


@pytest.fixture
def new_user(db):
    """A fresh user id, on plan FREE (5 messages a day) unless plan=None (no subscription)."""
    def make(plan="FREE"):
        user = f"user-{uuid.uuid4().hex[:10]}"
        if plan:
            db.execute("SELECT quota.assign_plan(%s, %s)", (user, plan))
        return user
    return make


def next_utc_midnight() -> str:
    """reset_at of the pinned day's window: "2026-11-24T00:00:00Z"."""
    return RESET.strftime("%Y-%m-%dT%H:%M:%SZ")


def quota_date() -> str:
    return TODAY.isoformat()                        # "2026-11-23"


def retry_after() -> int:
    """Seconds from quota's pinned clock to the reset: 43200 (12 h)."""
    return int((RESET - NOW).total_seconds())


def count(db, table, user):
    return db.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s", (user,)).fetchone()[0]


def send(http, user, content="Bonjour", **extra):
    return http.post("/v1/chat/messages", json={"content": content, **extra}, headers={"X-User-Id": user})
