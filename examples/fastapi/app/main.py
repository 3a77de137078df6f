"""Chat API with a daily message quota enforced by quota_ext (seed 003, story 4.2).

No auth in this example: the user id is the X-User-Id header."""
import json
import logging
import os
import re
import uuid
from pathlib import Path

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from .db import Conversation, Message, SessionLocal, quota_clock
from .quota_service import ApiError, get_quota_status, iso, quota_error

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
log = logging.getLogger("chat.quota")
app = FastAPI(title="quota_ext FastAPI example")
STATIC = Path(__file__).parent / "static"
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@app.middleware("http")
async def request_id_middleware(request: Request, call_next):
    given = request.headers.get("x-request-id", "")
    request.state.request_id = given if REQUEST_ID.match(given) else str(uuid.uuid4())
    response = await call_next(request)
    response.headers["X-Request-Id"] = request.state.request_id
    return response


def error_response(request: Request, status: int, code: str, message: str, details=None, headers=None):
    rid = getattr(request.state, "request_id", None) or str(uuid.uuid4())
    body = {"error": {"code": code, "message": message, "details": details or {}, "request_id": rid}}
    return JSONResponse(body, status_code=status, headers={**(headers or {}), "X-Request-Id": rid})


@app.exception_handler(ApiError)
async def api_error_handler(request: Request, exc: ApiError):
    return error_response(request, exc.status, exc.code, exc.message, exc.details, exc.headers)


@app.exception_handler(RequestValidationError)
async def validation_handler(request: Request, exc: RequestValidationError):
    errors = [{"field": ".".join(map(str, e["loc"][1:])), "message": e["msg"]} for e in exc.errors()]
    return error_response(request, 422, "validation_error", "Invalid request.", {"errors": errors})


@app.exception_handler(Exception)
async def unexpected_handler(request: Request, exc: Exception):
    log.exception("unexpected_error request_id=%s", getattr(request.state, "request_id", None))
    return error_response(request, 500, "internal_error", "Unexpected error.")


def current_user(x_user_id: str | None = Header(default=None, max_length=128)) -> str:
    if not x_user_id:
        raise ApiError(401, "unauthenticated", "Send the user id in the X-User-Id header.")
    return x_user_id


def raise_quota_error(exc: DBAPIError, request: Request, user_id: str):
    err = quota_error(exc, quota_clock)
    if err is None:
        raise exc
    rid = request.state.request_id
    if err.code == "quota_exceeded":
        # Every block is logged with its request_id (quota_ext also counts it in quota.stats).
        log.warning("quota_blocked %s", json.dumps({"request_id": rid, "user_id": user_id, **err.details}))
    elif err.code == "invalid_quota_state":
        log.error("quota_state_invalid %s", json.dumps({"request_id": rid, "user_id": user_id, **err.details}))
    raise err from exc


class MessageIn(BaseModel):
    content: str = Field(min_length=1, max_length=4000)
    conversation_id: int | None = None


@app.post("/v1/chat/messages", status_code=201)
def post_message(body: MessageIn, request: Request, user_id: str = Depends(current_user)):
    rid = request.state.request_id
    try:
        with SessionLocal.begin() as session:  # one transaction: commit, or roll back everything
            if body.conversation_id is None:
                conversation = Conversation(user_id=user_id, title=body.content[:60])
                session.add(conversation)
                session.flush()
            else:
                conversation = session.scalar(select(Conversation).where(
                    Conversation.id == body.conversation_id, Conversation.user_id == user_id))
                if conversation is None:
                    raise ApiError(404, "conversation_not_found", "No such conversation.")
            message = Message(conversation_id=conversation.id, user_id=user_id, content=body.content)
            session.add(message)
            session.flush()  # the quota trigger runs here: QT429 aborts the whole transaction
            quota = get_quota_status(session, user_id)  # a later statement: sees this message
    except DBAPIError as exc:
        raise_quota_error(exc, request, user_id)
    log.info("quota_consumed %s", json.dumps({"request_id": rid, "user_id": user_id, **quota}))
    return {
        "data": {"id": message.id, "conversation_id": conversation.id, "content": message.content,
                 "created_at": iso(message.created_at)},
        "meta": {"request_id": rid, "quota": quota},
    }


@app.get("/v1/billing/quota")
def billing_quota(request: Request, user_id: str = Depends(current_user)):
    try:
        with SessionLocal() as session:
            quota = get_quota_status(session, user_id)
    except DBAPIError as exc:
        raise_quota_error(exc, request, user_id)
    return {"data": quota, "meta": {"request_id": request.state.request_id}}


@app.get("/health", include_in_schema=False)
def health():
    # The pid lets test.sh check that it talks to the process it started.
    return {"status": "ok", "pid": os.getpid()}


@app.get("/", include_in_schema=False)
def status_page():
    return FileResponse(STATIC / "index.html")
