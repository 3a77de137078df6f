"""The chat and quota API over real HTTP, with exact values read back from PostgreSQL."""
import json
import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from conftest import APP_URL, count, next_utc_midnight, quota_date, retry_after, send

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def quota_of(http, user, **headers):
    return http.get("/v1/billing/quota", headers={"X-User-Id": user, **headers})


def test_quota_of_a_new_user(http, new_user):
    user = new_user()
    res = quota_of(http, user)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["data"] == {"limit": 5, "consumed": 0, "remaining": 5, "reset_at": next_utc_midnight(),
                            "quota_date": quota_date()}
    assert body["meta"] == {"request_id": res.headers["X-Request-Id"]}


def test_request_id_is_echoed_or_generated(http, new_user):
    user = new_user()
    res = quota_of(http, user, **{"X-Request-Id": "req-echo-42"})
    assert res.headers["X-Request-Id"] == "req-echo-42"
    assert res.json()["meta"]["request_id"] == "req-echo-42"
    res = http.post(
        "/v1/chat/messages", json={"content": "x"}, headers={"X-User-Id": user, "X-Request-Id": "req-send-7"})
    assert res.status_code == 201 and res.headers["X-Request-Id"] == "req-send-7"
    assert res.json()["meta"]["request_id"] == "req-send-7"
    generated = quota_of(http, user).headers["X-Request-Id"]
    assert UUID_RE.match(generated), generated


def test_each_message_counts_then_429(http, db, new_user):
    user = new_user()
    for i in range(1, 6):
        res = send(http, user, f"message {i}")
        assert res.status_code == 201, res.text
        assert res.json()["meta"]["quota"] == {"limit": 5, "consumed": i, "remaining": 5 - i,
                                               "reset_at": next_utc_midnight(),
                                               "quota_date": quota_date()}
    data = quota_of(http, user).json()["data"]
    assert (data["limit"], data["consumed"], data["remaining"]) == (5, 5, 0)

    res = send(http, user, "one too many", conversation_id=None)
    assert res.status_code == 429, res.text
    error = res.json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == "quota_exceeded"
    assert error["details"] == {"remaining": 0, "limit": 5, "consumed": 5, "reset_at": next_utc_midnight()}
    assert error["request_id"] == res.headers["X-Request-Id"]
    # The app counts Retry-After from quota's clock (pinned): exactly the 12 h left of the day.
    assert res.headers["Retry-After"] == str(retry_after())
    assert count(db, "messages", user) == 5
    used = db.execute("SELECT used FROM quota.quota_status(%s) WHERE metric = 'messages'", (user,)).fetchone()[0]
    assert used == 5


def test_a_full_team_pool_is_named_as_such(http, db, new_user):
    """quota_ext 0.8.0 pools: the user draws from a team pool of 3 messages a day; their own
    5 a day still have room when the team's are used up, so the 429 says the team's pool is
    full (details.pool names it), not the personal limit."""
    team, user = f"team-{uuid.uuid4().hex[:10]}", new_user()
    db.execute("SELECT quota.set_limit('TEAM3', 'messages', 'day', 3)")
    db.execute("SELECT quota.assign_plan(%s, 'TEAM3')", (team,))
    db.execute("SELECT quota.set_pool(%s, %s)", (user, team))
    for _ in range(3):
        assert send(http, user).status_code == 201
    res = send(http, user, "over the team's pool")
    assert res.status_code == 429, res.text
    error = res.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert "team's shared daily message pool is used up (3 a day" in error["message"], error["message"]
    assert "Daily message limit" not in error["message"]
    assert error["details"] == {"remaining": 0, "limit": 3, "consumed": 3, "reset_at": next_utc_midnight(), "pool": team}
    assert res.headers["Retry-After"] == str(retry_after())
    assert count(db, "messages", user) == 3
    data = quota_of(http, user).json()["data"]
    assert (data["limit"], data["consumed"], data["remaining"]) == (5, 3, 2)  # the user's own quota
    assert data["pool"] == {"id": team, "limit": 3, "consumed": 3, "remaining": 0}


def test_refused_message_rolls_back_the_whole_transaction(http, db, new_user):
    user = new_user()
    first = send(http, user, "hello").json()["data"]
    for _ in range(4):
        assert send(http, user, "more", conversation_id=first["conversation_id"]).status_code == 201
    assert (count(db, "conversations", user), count(db, "messages", user)) == (1, 5)
    # A refused message in a new conversation: the conversation inserted before it goes too.
    res = send(http, user, "starts a new conversation")
    assert res.status_code == 429
    assert (count(db, "conversations", user), count(db, "messages", user)) == (1, 5)
    assert db.execute("SELECT count(*) FROM messages WHERE content = 'starts a new conversation'").fetchone()[0] == 0
    ledger = db.execute("SELECT count(*) FROM quota.usage_events WHERE subject = %s AND kind = 'consume'",
                        (user,)).fetchone()[0]
    assert ledger == 5


def test_every_block_is_logged_with_its_request_id(http, new_user):
    user = new_user()
    for _ in range(5):
        send(http, user)
    rid = f"req-{uuid.uuid4()}"
    res = http.post("/v1/chat/messages", json={"content": "blocked"}, headers={"X-User-Id": user, "X-Request-Id": rid})
    assert res.status_code == 429
    lines = [l for l in Path(os.environ["APP_LOG"]).read_text().splitlines() if "quota_blocked" in l and rid in l]
    assert len(lines) == 1, lines
    logged = json.loads(lines[0].split("quota_blocked ", 1)[1])
    assert logged == {"request_id": rid, "user_id": user, "remaining": 0, "limit": 5, "consumed": 5,
                      "reset_at": next_utc_midnight()}


def test_no_active_subscription(http, db, new_user):
    user = new_user(plan=None)  # quota_ext raises QT404 for a subject without a plan
    res = send(http, user)
    assert res.status_code == 403, res.text
    assert res.json()["error"]["code"] == "no_active_subscription"
    assert (count(db, "conversations", user), count(db, "messages", user)) == (0, 0)
    res = quota_of(http, user)
    assert res.status_code == 403 and res.json()["error"]["code"] == "no_active_subscription"


def test_invalid_quota_state(http, db, new_user):
    user = new_user()
    assert send(http, user).status_code == 201
    # Someone edits quota's state by hand (as postgres): quota_ext refuses with XX001 data_corrupted.
    db.execute("UPDATE quota.subjects SET time_zone = 'Mars/Olympus' WHERE subject = %s", (user,))
    for res in (send(http, user), quota_of(http, user)):
        assert res.status_code == 500, res.text
        error = res.json()["error"]
        assert error["code"] == "invalid_quota_state"
        assert error["details"] == {"table": "quota.subjects", "column": "time_zone"}
    assert count(db, "messages", user) == 1


def test_concurrent_sends_never_exceed_the_limit(db, new_user):
    user = new_user()
    def one(i):
        with httpx.Client(base_url=APP_URL, timeout=10) as c:
            return send(c, user, f"parallel {i}").status_code
    with ThreadPoolExecutor(12) as pool:
        statuses = sorted(pool.map(one, range(12)))
    assert statuses == [201] * 5 + [429] * 7
    assert count(db, "messages", user) == 5


def test_missing_user_and_bad_body(http):
    res = http.get("/v1/billing/quota")
    assert res.status_code == 401 and res.json()["error"]["code"] == "unauthenticated"
    res = http.post("/v1/chat/messages", json={"content": ""}, headers={"X-User-Id": "someone"})
    assert res.status_code == 422 and res.json()["error"]["code"] == "validation_error"
