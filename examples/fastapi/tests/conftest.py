"""Fixtures: the running app (APP_URL, started by test.sh) and an admin connection to its
database as postgres, to set plans up and to read the truth from the tables."""
import os
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import psycopg
import pytest

APP_URL = os.environ["APP_URL"]


@pytest.fixture(scope="session")
def db():
    with psycopg.connect(dbname=os.environ["EXAMPLE_DB"], user="postgres", autocommit=True) as conn:
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
    tomorrow = datetime.now(timezone.utc).date() + timedelta(days=1)
    return f"{tomorrow.isoformat()}T00:00:00Z"


def count(db, table, user):
    return db.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s", (user,)).fetchone()[0]


def send(http, user, content="Bonjour", **extra):
    return http.post("/v1/chat/messages", json={"content": content, **extra}, headers={"X-User-Id": user})
